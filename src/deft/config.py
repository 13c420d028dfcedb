"""One config style for every command: a dataclass whose fields carry their help text, aliases,
choices and range checks, loaded from YAML and ``key=value`` / ``--flag`` overrides.

A command declares its options once::

    @dataclass
    class EvalConfig:
        model: str = option("smollm2-135m", "model to evaluate")
        n: int = option(64, "number of problems", aliases=("size",), check="positive")

    add_config_flags(parser, EvalConfig)        # --model, --n, --size (alias), --config FILE
    cfg = config_from_args(EvalConfig, args)    # YAML file, then key=value pairs, then --flags

and :func:`load_config` converts every value to the field's type, resolves aliases, checks ranges and
choices, suggests the closest name for an unknown key ("did you mean ..."), then calls the class's
optional ``validate()`` for cross-field rules. Every error is a one-line :class:`ConfigError` naming
where the value came from (file, command line) and the field. Nothing here imports torch.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import hashlib
import json
import math
import re
from dataclasses import field, fields
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Union, get_args, get_origin, get_type_hints

import yaml

__all__ = ["ConfigError", "option", "load_config", "add_config_flags", "config_from_args", "config_to_dict",
           "check_device", "field_help", "help_suffix", "alias_map", "settings_hash", "parse_pairs", "read_yaml",
           "explicit_fields", "was_loaded", "item_type", "split_list", "split_specs", "CHECKS", "SPLITTERS"]


class ConfigError(ValueError):
    """A bad option value: one line naming the source, the field and what to do."""


def _check_positive(v):
    return None if v > 0 else "must be positive"


def _check_non_negative(v):
    return None if v >= 0 else "must be zero or positive"


def _check_ratio(v):
    return None if 0 <= v < 1 else "must be a ratio in [0, 1)"


def _check_unit(v):
    return None if 0 <= v <= 1 else "must be in [0, 1]"


def _check_positive_or_minus_one(v):
    return None if v > 0 or v == -1 else "must be positive, or -1"


CHECKS: dict[str, Callable[[Any], Optional[str]]] = {
    "positive": _check_positive,
    "non_negative": _check_non_negative,
    "ratio": _check_ratio,
    "unit": _check_unit,
    "positive_or_minus_one": _check_positive_or_minus_one,
    "finite": lambda v: None,  # every float is checked for finiteness; the name documents intent
}


def split_list(text: str) -> list[str]:
    """``"wandb, tensorboard,"`` -> ``["wandb", "tensorboard"]``: comma-separated items, stripped,
    blanks dropped."""
    return [item.strip() for item in str(text).split(",") if item.strip()]


_SPEC_PARAM = re.compile(r"^\s*[A-Za-z_]\w*\s*=")


def split_specs(text: str) -> list[str]:
    """Comma-separated objective specs whose own parameters are comma-separated too:
    ``"power:alpha=0.3,nll,eaft:k=20,gamma=1"`` -> ``["power:alpha=0.3", "nll", "eaft:k=20,gamma=1"]``.

    An item of the form ``key=value`` (an identifier, then ``=``) continues the previous spec when
    that spec has parameters (``name:...``); anything else starts a new spec. A mask such as
    ``nll[p>=0.1]`` starts a spec (its ``=`` follows a bracket, not an identifier)."""
    specs: list[str] = []
    for item in split_list(text):
        if specs and ":" in specs[-1] and _SPEC_PARAM.match(item):
            specs[-1] = f"{specs[-1]},{item}"
        else:
            specs.append(item)
    return specs


# how a list field splits one string: ``option(..., split=NAME)``
SPLITTERS: dict[str, Callable[[str], list[str]]] = {
    "comma": split_list,
    "specs": split_specs,
    "none": lambda text: [text.strip()] if text.strip() else [],
}


def option(default: Any, help: str, *, aliases: tuple[str, ...] = (), choices: Optional[tuple] = None,
           check: Union[str, Callable[[Any], Optional[str]], None] = None, flag: bool = True,
           allow_inf: bool = False, split: str = "comma", nargs: Optional[str] = None,
           metavar: Optional[str] = None):
    """A config field: ``default``, one ``help`` text (used by ``--help`` and the docs), alternative
    names (``aliases``: accepted in YAML, ``key=value`` and as ``--flags``), allowed ``choices``, a
    range ``check`` (a name in :data:`CHECKS` or ``value -> error or None``). ``flag=False`` keeps a
    field out of the command line (YAML only). Float fields must be finite unless ``allow_inf``.

    A field typed ``list[str]`` / ``list[int]`` / ``list[float]`` is a list once loaded: it accepts a
    YAML list, a comma-separated string (from YAML, ``key=value`` or its ``--flag``, which may be
    repeated) or both; ``split`` names how a string splits (:data:`SPLITTERS`: ``comma``, ``specs`` for
    objective specs with their own comma-separated parameters, ``none`` for a single item), items are
    stripped, blanks dropped and each converted to the item type; the string ``none`` is the empty
    list. ``choices`` and a named ``check`` apply to every item, a callable ``check`` to the whole list.
    ``nargs="+"`` lets the ``--flag`` take several space-separated values; ``metavar`` names the
    flag's value in ``--help`` (default: the field name in capitals)."""
    if isinstance(check, str) and check not in CHECKS:
        raise KeyError(f"unknown check {check!r}; known: {', '.join(CHECKS)}")
    if split not in SPLITTERS:
        raise KeyError(f"unknown split {split!r}; known: {', '.join(SPLITTERS)}")
    meta = {"help": help, "aliases": tuple(aliases), "choices": choices, "check": check, "flag": flag,
            "allow_inf": allow_inf, "split": split, "nargs": nargs, "metavar": metavar}
    if isinstance(default, (list, dict, set)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return field(default=default, metadata=meta)


def _base_type(cls, name: str):
    hint = get_type_hints(cls)[name]
    if get_origin(hint) is Union:
        args = [a for a in get_args(hint) if a is not type(None)]
        return args[0], True
    return hint, False


def alias_map(cls) -> dict[str, str]:
    """Every accepted name (field names and their aliases, with ``-`` or ``_``) -> field name."""
    names = {}
    for f in fields(cls):
        for name in (f.name, *f.metadata.get("aliases", ())):
            names[name] = f.name
            names[name.replace("_", "-")] = f.name
    return names


def field_help(cls) -> dict[str, str]:
    """Help text of every field of ``cls``."""
    return {f.name: f.metadata.get("help", "") for f in fields(cls)}


def _item_kind(kind) -> Optional[type]:
    """The item type of a list field's type (``list[int]`` -> int, bare ``list`` -> str), else None."""
    if kind in (list, tuple):
        return str
    if get_origin(kind) in (list, tuple):
        args = [a for a in get_args(kind) if a is not Ellipsis]
        return args[0] if args else str
    return None


def item_type(cls, name: str) -> Optional[type]:
    """The item type of the list field ``name`` of ``cls`` (``list[int]`` -> int), None for a field
    that is not a list."""
    return _item_kind(_base_type(cls, name)[0])


def _convert(cls, name: str, raw: Any, where: str) -> Any:
    kind, optional = _base_type(cls, name)
    item_kind = _item_kind(kind)
    if item_kind is not None:
        if optional and raw is None:
            return None
        split = {f.name: f for f in fields(cls)}[name].metadata.get("split", "comma")
        return _convert_list(name, raw, item_kind, SPLITTERS[split], where)
    if raw is None or (optional and isinstance(raw, str) and raw.strip().lower() in ("none", "null", "~", "")):
        if optional:
            return None
        raise ConfigError(f"{where}: '{name}' needs a value")
    return _convert_scalar(kind, name, raw, where)


def _convert_list(name: str, raw: Any, item_kind: type, split: Callable[[str], list[str]], where: str) -> list:
    """A list field's value: strings split (by ``split``) and stripped, nested lists (a repeated
    ``--flag``) flattened, blanks dropped, every item converted to ``item_kind``."""
    if raw is None or (isinstance(raw, str) and raw.strip().lower() in ("none", "null", "~")):
        return []
    if isinstance(raw, dict):
        raise ConfigError(f"{where}: '{name}' must be a list or a comma-separated string, got {raw!r}")
    items: list = []
    for part in raw if isinstance(raw, (list, tuple)) else [raw]:
        if isinstance(part, (list, tuple)):
            items.extend(_convert_list(name, part, item_kind, split, where))
        elif isinstance(part, str):
            items.extend(split(part))
        elif part is not None:
            items.append(part)
    return [_convert_scalar(item_kind, name, item, where) for item in items]


def _convert_scalar(kind, name: str, raw: Any, where: str) -> Any:
    try:
        if kind is bool:
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if kind is int:
            if isinstance(raw, bool):
                raise ValueError
            if isinstance(raw, float):
                if not raw.is_integer():
                    raise ValueError
                return int(raw)
            text = str(raw).strip()
            value = float(text) if any(c in text for c in ".eE") else int(text)
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if kind is float:
            if isinstance(raw, bool):
                raise ValueError
            return float(raw)
        if isinstance(raw, (dict, list)):
            raise ValueError
        return str(raw)
    except (TypeError, ValueError, OverflowError):
        label = getattr(kind, "__name__", str(kind))
        raise ConfigError(f"{where}: '{name}' must be {_article(label)}, got {raw!r}") from None


def _article(label: str) -> str:
    return {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string"}.get(label, label)


def _check_value(cls, f, value: Any, where: str) -> None:
    """Finiteness, ``choices`` and ``check`` of one field; a list's items are checked one by one
    (a callable ``check`` sees the whole list)."""
    if value is None:
        return
    meta = f.metadata
    check = meta.get("check")
    if isinstance(value, list):
        for item in value:
            _check_item(f, item, CHECKS.get(check) if isinstance(check, str) else None, where)
        rule = check if callable(check) else None
    else:
        _check_item(f, value, None, where)
        rule = CHECKS[check] if isinstance(check, str) else check
    if rule is not None:
        problem = rule(value)
        if problem:
            raise ConfigError(f"{where}: '{f.name}' {problem}, got {value!r}")


def _check_item(f, value: Any, rule: Optional[Callable[[Any], Optional[str]]], where: str) -> None:
    meta = f.metadata
    if isinstance(value, float) and not math.isfinite(value) and not meta.get("allow_inf"):
        raise ConfigError(f"{where}: '{f.name}' must be a finite number, got {value!r}")
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        raise ConfigError(f"{where}: '{f.name}' must be one of {', '.join(map(str, choices))}, got {value!r}")
    problem = rule(value) if rule is not None else None
    if problem:
        raise ConfigError(f"{where}: '{f.name}' {problem}, got {value!r}")


def _unknown(cls, key: str, where: str, command: str) -> ConfigError:
    names = alias_map(cls)
    close = difflib.get_close_matches(key.replace("-", "_"), [n for n in names if "-" not in n], n=1, cutoff=0.6)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    see = f"; see 'deft {command} --help'" if command else ""
    return ConfigError(f"{where}: unknown option '{key}'{hint}{see}")


def _command_of(cls) -> str:
    return getattr(cls, "COMMAND", "")


def apply_overrides(cfg, overrides: Mapping[str, Any], where: str = "command line"):
    """``cfg`` with ``overrides`` (any accepted name -> raw value) converted and checked."""
    cls = type(cfg)
    names = alias_map(cls)
    values: dict[str, Any] = {}
    for key, raw in overrides.items():
        name = names.get(str(key)) or names.get(str(key).replace("-", "_"))
        if name is None:
            raise _unknown(cls, str(key), where, _command_of(cls))
        values[name] = _convert(cls, name, raw, where)
    by_name = {f.name: f for f in fields(cls)}
    for name, value in values.items():
        _check_value(cls, by_name[name], value, where)
    return dataclasses.replace(cfg, **values)


def read_yaml(path: str) -> dict:
    """The mapping in the YAML file ``path``; a missing file, bad UTF-8, bad YAML (with its line) or a
    non-mapping is a one-line :class:`ConfigError` naming the file."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 (byte 0x{err.object[err.start]:02x} at offset {err.start}); "
                          "re-save the file as UTF-8") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{line}: not valid YAML ({getattr(err, 'problem', err)})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must be a mapping of option: value")
    return data


def load_config(cls, path: Optional[str] = None, overrides: Optional[Mapping[str, Any]] = None, *,
                where: str = "command line"):
    """Build ``cls`` from its defaults, then the YAML file ``path`` (``yaml.safe_load``), then
    ``overrides`` (later wins). Each value is converted and range-checked where it was given, then
    ``cfg.validate()`` (if the class has one) checks cross-field rules. The names given explicitly are
    kept in ``cfg._explicit`` (a frozenset) for presets that fill only what the user left unset."""
    cfg = cls()
    explicit: set[str] = set()
    names = alias_map(cls)
    if path:
        data = read_yaml(path)
        cfg = apply_overrides(cfg, data, where=str(path))
        explicit |= {names[str(k)] if str(k) in names else str(k) for k in data}
    if overrides:
        cfg = apply_overrides(cfg, overrides, where=where)
        explicit |= {names.get(str(k)) or names.get(str(k).replace("-", "_")) for k in overrides}
    object.__setattr__(cfg, "_explicit", frozenset(explicit))
    validate = getattr(cfg, "validate", None)
    if callable(validate):
        result = validate()
        if result is not None:
            cfg = result
            object.__setattr__(cfg, "_explicit", frozenset(explicit))
    return cfg


def explicit_fields(cfg) -> frozenset:
    """The field names the user set (file, pairs or flags) when ``cfg`` was loaded (empty for a
    config built directly)."""
    return getattr(cfg, "_explicit", frozenset())


def was_loaded(cfg) -> bool:
    """Whether ``cfg`` came from :func:`load_config` (converted, checked and validated), rather than
    being built directly from the class."""
    return hasattr(cfg, "_explicit")


def config_to_dict(cfg) -> dict:
    """The resolved settings as a plain dict (YAML/JSON-ready)."""
    return dataclasses.asdict(cfg)


def settings_hash(settings: Mapping[str, Any], inputs: Mapping[str, Optional[str]] = ()) -> str:
    """sha256 over the resolved ``settings`` and the contents of the ``inputs`` files (name -> path;
    a directory hashes its files' names and contents; a non-path value hashes as text). Two runs with
    the same hash were made from the same settings and the same bytes of input."""
    h = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for name in sorted(dict(inputs)):
        value = dict(inputs)[name]
        h.update(f"\0{name}\0".encode())
        if value is None:
            continue
        path = Path(str(value))
        if path.is_file():
            h.update(_file_digest(path).encode())
        elif path.is_dir():
            for file in sorted(p for p in path.rglob("*") if p.is_file()):
                h.update(str(file.relative_to(path)).encode())
                h.update(_file_digest(file).encode())
        else:
            h.update(str(value).encode())
    return h.hexdigest()


def _file_digest(path: Path) -> str:
    d = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            d.update(block)
    return d.hexdigest()


def parse_pairs(pairs) -> dict:
    """``["lr=2e-5", "packing=true"]`` -> ``{"lr": "2e-5", "packing": "true"}``."""
    out = {}
    for item in pairs or ():
        key, eq, value = str(item).partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"expected key=value, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def _flag_names(f) -> tuple[list[str], list[str]]:
    """(shown flags, hidden flags): ``--dash-names`` for the field and its aliases are shown;
    the ``--underscore_names`` spellings (as in HF/TRL scripts) are accepted but not listed."""
    shown, hidden = [], []
    for name in (f.name, *f.metadata.get("aliases", ())):
        dash, under = "--" + name.replace("_", "-"), "--" + name
        if dash not in shown:
            shown.append(dash)
        if under != dash and under not in hidden:
            hidden.append(under)
    return shown, hidden


def help_suffix(help_text: str, default: Any, choices: Optional[tuple] = None) -> str:
    """What ``--help`` adds after a field's help: its choices and its default, each said once.

    ``" (default 8)"``, ``" (hf|vllm; default hf)"``; no default when the help text already says
    one (``"... (default 64 on a GPU, 8 on CPU)"``) or when there is none to say (``None``, an
    empty string or list: the help says what happens then); ``None`` is not listed as a choice."""
    shown = [str(c) for c in choices or () if c is not None]
    says_default = re.search(r"\bdefault\b", help_text, re.I) is not None
    parts = ["|".join(shown)] if shown else []
    if isinstance(default, (list, tuple)):  # a list default is said as it is typed: a,b,c
        default = ",".join(map(str, default))
    if not says_default and default is not None and default != "":
        parts.append(f"default {default}")
    return f" ({'; '.join(parts)})" if parts else ""


def add_config_flags(parser: argparse.ArgumentParser, cls, *, config_file: bool = True, pairs: bool = False,
                     skip: tuple[str, ...] = ()) -> None:
    """Add ``--flag`` options for every field of ``cls`` (aliases too; ``--x/--no-x`` for booleans),
    with the field's help and default. ``config_file`` adds ``--config FILE``; ``pairs`` adds
    trailing ``key=value`` overrides. Unset flags are absent from the parsed namespace so that a YAML
    file's values are not overwritten by defaults. A list field's flag may be repeated (its values are
    joined) and takes several values with ``nargs="+"``."""
    if config_file:
        parser.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS,
                            help="YAML file of options (keys are the option names, with underscores)")
    if pairs:
        parser.add_argument("overrides", nargs="*", metavar="key=value", default=[],
                            help="option overrides, e.g. lr=2e-5 packing=true")
    for f in fields(cls):
        if f.name in skip or not f.metadata.get("flag", True):
            continue
        help_text = f.metadata.get("help", "")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        suffix = help_suffix(help_text, default, f.metadata.get("choices"))
        kind, _ = _base_type(cls, f.name)
        shown, hidden = _flag_names(f)
        if kind is bool:
            parser.add_argument(*shown, dest=f.name, action="store_true", default=argparse.SUPPRESS,
                                help=help_text + suffix)
            negatives = ["--no-" + fl[2:] for fl in shown + hidden]
            parser.add_argument(*negatives, dest=f.name, action="store_false", default=argparse.SUPPRESS,
                                help=argparse.SUPPRESS)
            if hidden:
                parser.add_argument(*hidden, dest=f.name, action="store_true", default=argparse.SUPPRESS,
                                    help=argparse.SUPPRESS)
        else:
            many = {"action": "append", "nargs": f.metadata.get("nargs")} if _item_kind(kind) is not None else {}
            parser.add_argument(*shown, dest=f.name, default=argparse.SUPPRESS,
                                metavar=f.metadata.get("metavar") or f.name.upper(), help=help_text + suffix, **many)
            if hidden:
                parser.add_argument(*hidden, dest=f.name, default=argparse.SUPPRESS, help=argparse.SUPPRESS, **many)


def config_from_args(cls, args: argparse.Namespace, *, extra: Optional[Mapping[str, Any]] = None):
    """The config of a parsed command line: ``--config`` YAML, then ``key=value`` pairs, then flags."""
    values = vars(args)
    overrides = parse_pairs(values.get("overrides") or [])
    names = {f.name for f in fields(cls)}
    overrides.update({k: v for k, v in values.items() if k in names})
    if extra:
        overrides.update(extra)
    return load_config(cls, values.get("config"), overrides)


def check_device(device: Optional[str], field_name: str = "device") -> None:
    """Raise a one-line :class:`ConfigError` when ``device`` is not a torch device this machine
    has (``cuda`` on a CPU build, an index past the GPU count, a typo) — before any model loads."""
    if device is None:
        return
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise ConfigError(f"'{field_name}': unknown device {device!r}; use cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"'{field_name}': {device} is not available here (this torch {torch.__version__} "
                              "sees no CUDA GPU); pass --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"'{field_name}': {device} does not exist ({torch.cuda.device_count()} GPU(s))")
    elif dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ConfigError(f"'{field_name}': mps is not available here; pass --device cpu")
