#!/usr/bin/env bash
# envs/<env>.post-deploy.sh (each a link to this file). Snakemake runs it once, inside
# the new environment, after conda has built it (see the env file beside it). It installs this checkout editable, without dependencies
# (the env file pins them all): the Snakefile exports ACOUSTIC_LOTTERY_ROOT, the
# directory that holds it, because this script runs from a copy in .snakemake/conda/
# and from Snakemake's working directory, neither of which is the checkout.
set -euo pipefail
root="${ACOUSTIC_LOTTERY_ROOT:?not set: run snakemake with the Snakefile of this project}"
if [ ! -f "$root/pyproject.toml" ]; then
    echo "ACOUSTIC_LOTTERY_ROOT=$root holds no pyproject.toml: not an acoustic-lottery checkout" >&2
    exit 1
fi
python -m pip install --no-deps --no-build-isolation -e "$root"
