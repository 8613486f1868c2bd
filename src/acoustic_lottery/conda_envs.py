"""The link between a workflow run and the conda environments it builds.

`envs/<name>.post-deploy.sh` installs the project into a freshly built environment, but
Snakemake runs the script from its copy under `.snakemake/conda/` and from the working
directory (`--directory`), neither of which need be the checkout. The workflow therefore
names the checkout in the environment of its own process, which the script inherits (the
environments are built by the main process, before any job is scheduled, locally and on
a cluster alike).
"""

from __future__ import annotations

import os
from pathlib import Path

#: The variable the post-deploy scripts read.
ROOT_VARIABLE = "ACOUSTIC_LOTTERY_ROOT"


def export_checkout(root: str | os.PathLike[str]) -> Path:
    """Name `root` (the directory of the Snakefile) as the checkout to install."""
    path = Path(root).resolve()
    os.environ[ROOT_VARIABLE] = str(path)
    return path
