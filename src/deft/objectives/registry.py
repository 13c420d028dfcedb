"""The objective registry and the spec-string parser.

A spec is ``name`` or ``name:key=value,...``, optionally followed by a probability mask
``[p>=tau]`` or ``[p<=tau]`` for gate objectives, e.g. ``power:alpha=0.5``, ``deft``,
``nll[p>=0.1]``. The reference repository's names are accepted as aliases:
``original``, ``logp``, ``p``, ``GeneralFamily-<alpha>``, ``Cayley_Trans``, ``DEFT``,
``OnlyTopP-<tau>``, ``OnlyBottomP-<tau>``, ``OnlyTopLogP-<tau>``, ``OnlyBottomLogP-<tau>``.

Normalisation of masked objectives: the native ``obj[p>=tau]`` keeps every loss token in the
denominator (masked-out tokens count as a loss of 0), while the reference aliases ``Only*-<tau>``
divide by the number of **selected** tokens, as the reference code does
(:attr:`Objective.normalizer` = ``"selected"``; the engines' ``mean`` and ``stats["num_tokens"]``
then count the selected tokens).
"""

from __future__ import annotations

import re
from typing import Callable, Iterable, Union

from .base import REFERENCE_PREFIXES, Objective, ObjectiveDef, Param
from .needs import NEEDS, Need

__all__ = ["REGISTRY", "register", "parse_objective", "list_objectives", "objective_names", "describe_mask",
           "objective_inputs", "MASKS_HELP"]

MASKS_HELP = (
    "Masks: 'obj[p>=tau]' / 'obj[p<=tau]' train a gate objective only on tokens with sg(p) >= tau / <= tau; "
    "the mean divides by all loss tokens (masked-out tokens count as 0). The reference names OnlyTopP-tau, "
    "OnlyBottomP-tau (objective p) and OnlyTopLogP-tau, OnlyBottomLogP-tau (objective nll) divide by the "
    "selected tokens instead, as the reference code does."
)

REGISTRY: dict[str, ObjectiveDef] = {}
KINDS = ("gate", "distribution", "autograd")

_ALIASES = {"original": "nll", "logp": "nll", "Cayley_Trans": "cayley_floor", "DEFT": "deft"}
_MASK = re.compile(r"^(?P<base>.*)\[\s*p\s*(?P<op>>=|<=)\s*(?P<tau>[^\]]+)\]\s*$")


def register(
    name: str,
    kind: str,
    summary: str,
    *,
    params: dict[str, Param] | None = None,
    needs: Iterable[str] = (),
    has_focus: bool = False,
) -> Callable:
    """Decorator declaring an objective.

    ``kind`` is

    * ``"gate"``: the function takes :class:`~deft.objectives.base.Tokens` and returns
      :class:`~deft.objectives.base.PerTokenLoss` (loss of ``log p`` and detached statistics);
    * ``"distribution"``: it takes :class:`~deft.objectives.base.Dists` and returns a
      :class:`~deft.objectives.base.CrossEntropyTargets` (loss as cross-entropies to detached targets);
    * ``"autograd"``: any other loss of the whole distribution: it takes a
      :class:`~deft.objectives.base.Dists` whose ``logP`` is differentiable and returns
      :class:`~deft.objectives.base.PerTokenLoss`; the engines differentiate it with autograd (the
      fused engine one row sub-block at a time), which is slower than the closed forms.

    The function receives the parameter values as keyword arguments. ``needs`` names entries of
    :data:`deft.objectives.needs.NEEDS` (``"ref"``, ``"teacher"``, ``"old_logprobs"``,
    ``"batch"``, or one added with :func:`~deft.objectives.needs.register_need`); the function
    reads them as attributes of its ``Tokens`` / ``Dists`` argument (``t.old_logprobs``).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if isinstance(needs, str):
        needs = (needs,)
    needs = frozenset(needs)
    for need in sorted(needs):
        if need not in NEEDS:
            raise ValueError(f"objective '{name}': unknown need {need!r}; known needs: {', '.join(NEEDS)} "
                             "(add one with deft.objectives.register_need)")

    def wrap(fn: Callable) -> Callable:
        if name in REGISTRY:
            raise ValueError(f"objective '{name}' is already registered")
        REGISTRY[name] = ObjectiveDef(
            name=name, kind=kind, fn=fn, summary=summary, params=dict(params or {}),
            needs=needs, has_focus=has_focus,
        )
        return fn

    return wrap


def objective_names() -> list[str]:
    """Registered objective names, in declaration order."""
    return list(REGISTRY)


def list_objectives() -> dict[str, str]:
    """Map every objective name to a one-line description (with its parameters and defaults)."""
    out = {}
    for name, d in REGISTRY.items():
        extra = ", ".join(f"{k}={p.default}" for k, p in d.params.items())
        needs = ", ".join(n for n in sorted(d.needs) if NEEDS[n].source != "statistic")
        line = d.summary
        if extra:
            line += f" [{extra}]"
        if needs and "(needs" not in d.summary:  # the summary may say it in its own words
            line += f" (needs {needs})"
        out[name] = line
    return out


def describe_mask(objective: Objective) -> str:
    """One line on an objective's probability mask and what its mean divides by ("" if none)."""
    if objective.mask is None:
        return ""
    side, tau = objective.mask
    denominator = "the selected tokens (reference semantics)" if objective.normalizer == "selected" else \
        "all loss tokens"
    return f"mask: sg(p) {'>=' if side == 'top' else '<='} {tau}; the mean divides by {denominator}"


def _valid_names() -> str:
    aliases = list(_ALIASES) + [p + "<x>" for p in REFERENCE_PREFIXES]
    return f"valid objectives: {', '.join(REGISTRY)}; reference aliases: {', '.join(aliases)}"


def _parse_tau(spec: str, raw: str) -> float:
    try:
        tau = float(raw)
    except ValueError:
        raise ValueError(f"objective '{spec}': mask threshold must be a number in [0, 1], got {raw!r}") from None
    if not 0.0 <= tau <= 1.0:
        raise ValueError(f"objective '{spec}': mask threshold must be in [0, 1], got {raw!r}")
    return tau


def parse_objective(spec: Union[str, Objective], **overrides) -> Objective:
    """Parse a spec string into a bound :class:`~deft.objectives.base.Objective`.

    ``overrides`` set parameters from Python (``parse_objective("power", alpha=0.3)``).
    Raises ``ValueError`` naming the valid objectives or parameters on bad input.
    """
    if isinstance(spec, Objective):
        if not overrides:
            return spec
        spec = spec.spec
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"objective must be a non-empty string; {_valid_names()}")
    text = spec.strip()
    mask = None
    m = _MASK.match(text)
    if m:
        text = m.group("base").strip()
        mask = ("top" if m.group("op") == ">=" else "bottom", _parse_tau(spec, m.group("tau").strip()))

    name, _, rest = text.partition(":")
    name = name.strip()
    raw_params: dict[str, object] = {}
    normalizer = "tokens"
    for prefix, (target, side, pname) in REFERENCE_PREFIXES.items():
        if name.startswith(prefix):
            value = name[len(prefix):]
            if side is None:
                raw_params[pname] = value
            else:
                if mask is not None:
                    raise ValueError(f"objective '{spec}': '{prefix}<tau>' already sets a mask")
                mask = (side, _parse_tau(spec, value))
                normalizer = "selected"  # the reference divides by the selected tokens
            name = target
            break
    name = _ALIASES.get(name, name)
    if name not in REGISTRY:
        raise ValueError(f"unknown objective '{spec}'; {_valid_names()}")
    d = REGISTRY[name]

    if rest.strip():
        for item in rest.split(","):
            key, eq, value = item.partition("=")
            key = key.strip()
            if not eq or not key:
                raise ValueError(f"objective '{spec}': expected key=value, got {item.strip()!r}")
            raw_params[key] = value.strip()
    raw_params.update(overrides)

    values = {}
    for key, raw in raw_params.items():
        if key not in d.params:
            valid = ", ".join(f"{k} (default {p.default}: {p.help})" for k, p in d.params.items()) or "none"
            raise ValueError(f"objective '{name}' has no parameter '{key}'; valid parameters: {valid}")
        values[key] = d.params[key].parse(name, key, raw)
    bound = tuple((k, values.get(k, p.default)) for k, p in d.params.items())
    if mask is not None and d.kind != "gate":
        raise ValueError(f"objective '{spec}': a probability mask only wraps gate objectives, not '{name}'")
    return Objective(d, bound, mask, normalizer)


def objective_inputs(objective) -> list[Need]:
    """The :class:`~deft.objectives.needs.Need` entries of an objective (spec, :class:`Objective` or
    definition) that someone must provide: every need but engine statistics. The trainer loads one
    frozen model per ``"model"`` / ``"label_logprobs"`` entry."""
    definition = getattr(objective, "definition", objective)
    if isinstance(objective, str):
        definition = parse_objective(objective).definition
    return [NEEDS[name] for name in sorted(definition.needs) if NEEDS[name].source != "statistic"]
