"""Helpers shared by test_cli_data.py, test_data_command.py, test_data_config.py and
test_data_stats.py."""

from __future__ import annotations

import json

from deft.cli.main import main


def run(capsys, *argv):
    code = main(["data", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]
