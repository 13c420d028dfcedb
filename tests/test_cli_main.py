"""The ``deft`` entry point: lazy subcommands (help without torch), one-line errors, suggestions."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys

import pytest

from deft.cli.main import SUBCOMMANDS, build_parser, main

_PROBE = """
import sys
from deft.cli.main import main
try:
    main({argv!r})
except SystemExit:
    pass
heavy = [m for m in ("torch", "transformers", "datasets", "reasoning_gym") if m in sys.modules]
print("HEAVY=" + ",".join(heavy))
"""


@pytest.mark.parametrize("verb", ["", *SUBCOMMANDS])
def test_help_imports_no_torch(verb):
    argv = [verb, "--help"] if verb else ["--help"]
    out = subprocess.run([sys.executable, "-c", _PROBE.format(argv=argv)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "usage: deft" in out.stdout
    last = out.stdout.strip().splitlines()[-1]
    assert last == "HEAVY=", f"'deft {verb} --help' imported {last}"


def test_top_level_help_lists_every_subcommand():
    out = subprocess.run([sys.executable, "-m", "deft.cli.main", "--help"], capture_output=True, text=True).stdout
    for verb, summary in SUBCOMMANDS.items():
        assert verb in out and summary.split()[0] in out


def test_unknown_flag_suggests_the_closest(capsys):
    assert main(["train", "--learnig-rate", "1e-4"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("deft train: error: unrecognized argument '--learnig-rate' (did you mean '--learning-rate'?); "
                   "see 'deft train --help'")


def test_bad_value_is_one_line_before_any_model_loads(capsys):
    assert main(["train", "--data", "x.jsonl", "--lr", "inf"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["deft train: error: command line: 'lr' must be a finite number, got inf"]


def test_help_lists_every_subcommand_and_every_option_has_help():
    parser = build_parser()
    top = parser.format_help()
    for verb in SUBCOMMANDS:
        assert verb in top
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for verb, p in sub.choices.items():
        assert p.description, verb
        for action in p._actions:
            if action.dest != "help":
                assert action.help, f"deft {verb}: option {action.option_strings or action.dest} has no help"


def _option_texts(help_text: str) -> dict[str, str]:
    """``{first line of an entry: its whole text}`` for the argument sections of ``--help`` output
    (``positional arguments:`` and ``options:``; the description and the epilog are not entries)."""
    entries: dict[str, str] = {}
    section, current = None, None
    for line in help_text.splitlines():
        if line and not line.startswith(" "):
            section = line if line.rstrip().endswith(":") and "argument" in line or line.startswith("options") else None
            current = None
        elif not line.strip():
            section, current = None, None  # a blank line ends a section
        elif section and line.startswith("  ") and not line.startswith("   "):
            current = line.strip()
            entries[current] = current
        elif section and current:
            entries[current] += " " + line.strip()
    return entries


def test_option_texts_are_read_from_sections():
    text = ("usage: deft x\n\ndescription (default 1) (default 2)\n\noptions:\n  -h, --help  show\n"
            "  --n N       number (default 3)\n              more (default 4)\n\nepilog:\n  --k  (default 5) default\n")
    assert _option_texts(text) == {"-h, --help  show": "-h, --help  show",
                                   "--n N       number (default 3)": "--n N       number (default 3) more (default 4)"}


@pytest.mark.parametrize("verb", SUBCOMMANDS)
def test_no_option_says_its_default_twice(verb, capsys):
    with pytest.raises(SystemExit):
        main([verb, "--help"])
    entries = _option_texts(capsys.readouterr().out)
    assert any(head.startswith("-h, --help") for head in entries), entries  # the sections were found
    for head, text in entries.items():
        assert len(re.findall(r"\bdefault\b", text, re.I)) <= 1, f"deft {verb} --help: {text}"
        assert "(default None)" not in text and "default None" not in text, f"deft {verb} --help: {text}"


def test_eval_help_says_each_default_once(capsys):
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default 64 on a GPU, 8 on CPU)" in text and "100 for rg:TASK)" in text
    assert "(deft|paper)" in text  # the protocol's help names its default itself
    assert "(hf|vllm; default hf)" in text


def test_every_process_of_a_launch_reports_its_error_naming_itself(capsys, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert main(["train", "--lr", "-1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("deft train: error (process 1 of 2): ") and err.count("\n") == 1


def add_parser(subparsers):
    """The parser of the ``hello`` verb declared by :func:`test_one_declaration_registers_a_verb`."""
    from deft.cli.main import add_verb_parser

    p = add_verb_parser(subparsers, "hello", description="Say hello.")
    p.set_defaults(func=lambda args: print("hello") or 0)


def test_every_verb_summary_is_written_once():
    from deft.cli.main import VERBS

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    listed = {a.dest: a.help for a in sub._choices_actions}
    assert listed == {name: verb.summary for name, verb in VERBS.items()} == dict(SUBCOMMANDS)
    lazy = " ".join(subprocess.run([sys.executable, "-m", "deft.cli.main", "--help"], capture_output=True,
                                   text=True).stdout.split())
    for name, verb in VERBS.items():
        assert f"{name} {verb.summary}" in lazy, name  # deft --help, wrapped, shows the declared summary


def test_one_declaration_registers_a_verb(capsys):
    from deft.cli.main import register_verb, unregister_verb

    register_verb("hello", "print hello", module=__name__)
    try:
        assert "hello" in SUBCOMMANDS and SUBCOMMANDS["hello"] == "print hello"
        with pytest.raises(SystemExit):
            main(["--help"])
        assert "hello print hello" in " ".join(capsys.readouterr().out.split())
        assert main(["hello"]) == 0 and capsys.readouterr().out == "hello\n"
    finally:
        unregister_verb("hello")
    assert "hello" not in SUBCOMMANDS


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_each_verb_module_takes_its_summary_from_the_declaration(name, monkeypatch):
    import importlib

    from deft.cli.main import VERBS, Verb

    verb = VERBS[name]
    monkeypatch.setitem(VERBS, name, Verb(name, f"declared summary of {name}", verb.module))
    parser = argparse.ArgumentParser()
    subparsers = parser.add_subparsers()
    importlib.import_module(verb.module).add_parser(subparsers)  # without build_parser's own correction
    assert [a.help for a in subparsers._choices_actions] == [f"declared summary of {name}"]
