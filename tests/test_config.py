"""deft.config: one config style for every command (types, aliases, checks, YAML, flags, hashing)."""

from __future__ import annotations

import argparse
import re
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


@dataclass
class _Lists:
    COMMAND = "demo"
    names: list[str] = option(["a", "b"], "names", aliases=("name",))
    seeds: list[int] = option([], "seeds", check="non_negative")
    specs: list[str] = option(["nll"], "objective specs", split="specs")
    whole: list[str] = option([], "items kept whole", split="none", nargs="+")
    picks: list[str] = option([], "choices per item", choices=("x", "y"))
    extra: Optional[list[str]] = option(None, "None unless given")


def test_list_options_take_yaml_lists_comma_strings_and_repeated_flags(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("names: [' p ', q]\nseeds: '0, 1,2'\nspecs:\n  - power:alpha=0.3,beta=1\n  - nll\n")
    cfg = load_config(_Lists, str(config))
    assert (cfg.names, cfg.seeds, cfg.specs) == (["p", "q"], [0, 1, 2], ["power:alpha=0.3,beta=1", "nll"])
    parser = argparse.ArgumentParser()
    add_config_flags(parser, _Lists, pairs=True)
    args = parser.parse_args(["seeds=3, 4", "--names", "a,b", "--name", " c ", "--whole", "x,y", " z ",
                              "--specs", "eaft:k=20, gamma=1,nll[p>=0.1], deft"])
    cfg = config_from_args(_Lists, args)
    assert cfg.names == ["a", "b", "c"] and cfg.seeds == [3, 4] and cfg.whole == ["x,y", "z"]
    assert cfg.specs == ["eaft:k=20,gamma=1", "nll[p>=0.1]", "deft"]
    assert cfg.extra is None and load_config(_Lists, None, {"extra": "u,"}).extra == ["u"]
    assert load_config(_Lists, None, {"names": "none"}).names == [] and load_config(_Lists).names == ["a", "b"]


@pytest.mark.parametrize("key,value,message", [
    ("seeds", "1,x", "'seeds' must be an integer, got 'x'"),
    ("seeds", "1,-2", "'seeds' must be zero or positive, got -2"),
    ("picks", "x, z", "'picks' must be one of x, y, got 'z'"),
    ("names", {"a": 1}, "'names' must be a list or a comma-separated string"),
])
def test_list_items_are_converted_and_checked_one_by_one(key, value, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(_Lists, None, {key: value})


def test_split_specs_keeps_an_objective_s_own_parameters():
    from deft.config import split_specs

    assert split_specs("power:alpha=0.3,nll, eaft:k=20,gamma=1 ,") == ["power:alpha=0.3", "nll", "eaft:k=20,gamma=1"]
    assert split_specs("nll[p>=0.1],p[p<=0.5],OnlyTopP-0.1") == ["nll[p>=0.1]", "p[p<=0.5]", "OnlyTopP-0.1"]
    assert split_specs("k=2,nll") == ["k=2", "nll"]  # nothing to continue: left for the objective parser to refuse


def _list_fields():
    """(config class, field) for every list option of every command."""
    import dataclasses

    from deft.analysis.curves import CurvesConfig
    from deft.analysis.report import PlotConfig
    from deft.config import item_type
    from deft.data.config import DataConfig
    from deft.eval.config import EvalConfig
    from deft.recipes.compare import CompareConfig
    from deft.recipes.demo import DemoConfig
    from deft.recipes.paper_protocol import PaperCellConfig
    from deft.recipes.probe import ProbeConfig
    from deft.train.config import TrainConfig

    classes = (TrainConfig, EvalConfig, DataConfig, CompareConfig, ProbeConfig, DemoConfig, PlotConfig, CurvesConfig,
               PaperCellConfig)
    return [(cls, f) for cls in classes for f in dataclasses.fields(cls) if item_type(cls, f.name) is not None]


# a value each list option accepts, written with spaces and a trailing comma, and its items; options
# whose items may hold commas (split="none") keep each string whole, stripped
_SAMPLES = {"report_to": ("wandb, tensorboard ,", ["wandb", "tensorboard"]),
            "seeds": ("0, 1 ,", [0, 1]),
            "map": ("prompt=question, answer=solution ,", ["prompt=question", "answer=solution"]),
            "task_args": (" words=[1, 2] ", ["words=[1, 2]"]),
            "part": (" figfont=0.5 ", ["figfont=0.5"]),
            "probes": (" base=runs/probe ", ["base=runs/probe"]),
            "train": (" objective=eaft:k=20,gamma=1 ", ["objective=eaft:k=20,gamma=1"]), "eval": (" n=8 ", ["n=8"])}


def test_every_list_option_is_listed_with_a_sample_or_splits_on_commas():
    for cls, f in _list_fields():
        assert f.name in _SAMPLES or f.metadata["split"] != "none", f"{cls.__name__}.{f.name}: add a sample"


@pytest.mark.parametrize("cls,f", _list_fields(), ids=lambda x: getattr(x, "__name__", getattr(x, "name", "")))
def test_every_list_option_is_a_clean_list_once_loaded(cls, f):
    from deft.config import apply_overrides

    text, expected = _SAMPLES.get(f.name, ("nll, deft ,", ["nll", "deft"]))
    cfg = apply_overrides(cls(), {f.name: text}, where="test")
    assert getattr(cfg, f.name) == expected, f"{cls.__name__}.{f.name}"
    cfg = apply_overrides(cls(), {f.name: [text]}, where="test")  # a repeated flag or a YAML list
    assert getattr(cfg, f.name) == expected, f"{cls.__name__}.{f.name}"
