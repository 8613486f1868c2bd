"""Verb dispatch: every verb is found, and a job imports only its own verb's module."""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys

import pytest

from acoustic_lottery.cli import GROUPS, VERB_GROUPS, main


def test_the_verb_map_names_every_verb_of_every_module():
    found = {}
    for group in GROUPS:
        sub = argparse.ArgumentParser().add_subparsers()
        importlib.import_module(f"acoustic_lottery.cli.{group}").register(sub)
        found.update(dict.fromkeys(sub.choices, group))
    assert found == VERB_GROUPS


@pytest.mark.parametrize("verb", ["evaluate", "row", "table", "onnx-table", "efficiency-system"])
def test_light_verbs_do_not_import_torch(verb):
    # Hundreds of evaluate / row jobs each paid torch's import before the dispatch.
    code = (
        "import sys\n"
        "from acoustic_lottery.cli import main\n"
        f"try:\n    main([{verb!r}, '--help'])\nexcept SystemExit:\n    pass\n"
        "print('torch' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "False"


def test_an_unknown_verb_lists_all_verbs(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["no-such-verb"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice" in err and "lottery-round" in err and "efficiency-table" in err
