"""deft.config: one config style for every command (types, aliases, checks, YAML, flags, hashing)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Optional

import pytest

from deft.config import ConfigError, add_config_flags, config_from_args, load_config, option, parse_pairs, settings_hash


@dataclass
class _Cfg:
    COMMAND = "demo"
    out: str = option("runs/x", "output folder", aliases=("output_dir",))
    n: int = option(8, "count", aliases=("size",), check="positive")
    ratio: float = option(0.1, "a ratio", check="ratio")
    flag: bool = option(False, "a switch")
    name: Optional[str] = option(None, "a name", choices=(None, "a", "b"))
    tags: list = option([], "tags")

    def validate(self):
        if self.name == "b" and self.n < 2:
            raise ConfigError("'n' must be at least 2 when name is b")


def test_types_aliases_and_defaults():
    cfg = load_config(_Cfg, None, {"size": "3", "output-dir": "o", "flag": "yes", "tags": "x, y", "name": "none"})
    assert (cfg.n, cfg.out, cfg.flag, cfg.tags, cfg.name) == (3, "o", True, ["x", "y"], None)
    assert load_config(_Cfg).n == 8 and load_config(_Cfg).tags == [] and load_config(_Cfg).tags is not _Cfg().tags
    assert load_config(_Cfg, None, {"n": 4.0}).n == 4 and load_config(_Cfg, None, {"n": "1e1"}).n == 10


@pytest.mark.parametrize("key,value,message", [
    ("n", "0", "'n' must be positive, got 0"),
    ("n", "2.5", "'n' must be an integer, got '2.5'"),
    ("n", True, "'n' must be an integer"),
    ("ratio", "1", "'ratio' must be a ratio in [0, 1), got 1.0"),
    ("ratio", "nan", "'ratio' must be a finite number"),
    ("ratio", "-inf", "'ratio' must be a finite number"),
    ("flag", "maybe", "'flag' must be true or false"),
    ("name", "c", "'name' must be one of None, a, b, got 'c'"),
    ("nn", "1", "unknown option 'nn' (did you mean 'n'?); see 'deft demo --help'"),
])
def test_bad_values_are_one_line_errors(key, value, message):
    with pytest.raises(ConfigError) as err:
        load_config(_Cfg, None, {key: value})
    assert message in str(err.value) and "\n" not in str(err.value)
    assert str(err.value).startswith("command line: ")


def test_validate_runs_after_all_values():
    with pytest.raises(ConfigError, match="at least 2 when name is b"):
        load_config(_Cfg, None, {"name": "b", "n": "1"})
    assert load_config(_Cfg, None, {"name": "b", "n": "2"}).n == 2


def test_yaml_file_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("n: 5\nout: from-file\n")
    cfg = load_config(_Cfg, str(path), {"n": "6"})
    assert (cfg.n, cfg.out) == (6, "from-file")
    path.write_text("n: [1\n")
    with pytest.raises(ConfigError, match=r"c.yaml:\d+: not valid YAML"):
        load_config(_Cfg, str(path))
    path.write_text("- 1\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(_Cfg, str(path))
    path.write_text("n: 0\n")
    with pytest.raises(ConfigError, match=r"c.yaml: 'n' must be positive"):
        load_config(_Cfg, str(path))
    path.write_bytes(b"out: caf\xe9\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(_Cfg, str(path))
    path.write_text("!!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(_Cfg, str(path))
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(_Cfg, str(tmp_path / "missing.yaml"))


def test_flags_aliases_and_bools():
    parser = argparse.ArgumentParser()
    add_config_flags(parser, _Cfg, pairs=True)
    args = parser.parse_args(["--size", "4", "--output-dir", "d", "--flag", "ratio=0.5"])
    cfg = config_from_args(_Cfg, args)
    assert (cfg.n, cfg.out, cfg.flag, cfg.ratio) == (4, "d", True, 0.5)
    assert config_from_args(_Cfg, parser.parse_args(["--no-flag"])).flag is False
    assert config_from_args(_Cfg, parser.parse_args([])).n == 8  # unset flags do not override
    assert config_from_args(_Cfg, parser.parse_args(["--output_dir", "u"])).out == "u"  # HF spelling
    assert "--output_dir" not in parser.format_help() and "--output-dir" in parser.format_help()


def test_parse_pairs():
    assert parse_pairs(["a=1", "b = x=y"]) == {"a": "1", "b": "x=y"}
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_pairs(["novalue"])


def test_settings_hash_follows_settings_and_input_bytes(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text("a\n")
    h1 = settings_hash({"lr": 1e-4}, {"data": str(data)})
    assert h1 == settings_hash({"lr": 1e-4}, {"data": str(data)})
    assert h1 != settings_hash({"lr": 2e-4}, {"data": str(data)})
    data.write_text("b\n")
    assert h1 != settings_hash({"lr": 1e-4}, {"data": str(data)})


def test_devices_this_machine_lacks_are_refused_in_one_line():
    import torch

    from deft.config import check_device

    check_device(None)
    check_device("cpu")
    with pytest.raises(ConfigError, match="unknown device 'gpu0'"):
        check_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match=r"'device': cuda is not available here .*pass --device cpu"):
            check_device("cuda")


def test_help_suffix_says_choices_and_default_once():
    from deft.config import help_suffix

    assert help_suffix("samples per problem", 8) == " (default 8)"
    assert help_suffix("backend", "hf", ("hf", "vllm")) == " (hf|vllm; default hf)"
    assert help_suffix("batch size (default 64 on a GPU, 8 on CPU)", None) == ""  # the help says it, once
    assert help_suffix("deft (default: ours) or paper", "deft", ("deft", "paper")) == " (deft|paper)"
    assert help_suffix("folder for results (print only without it)", None) == ""  # no "(default None)"
    assert help_suffix("regime", None, (None, "math", "figfont")) == " (math|figfont)"
    assert help_suffix("columns", []) == "" and help_suffix("text", "") == ""
    assert help_suffix("flag", False) == " (default False)"
