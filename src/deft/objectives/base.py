"""What an objective is: a small declaration the engines evaluate.

Notation (the paper, Section 3 and Appendix B): for one token position,
logits ``z`` (size V), ``P = softmax(z)``, label ``y``, ``p = P[y]``, ``sg`` = stop-gradient.

Three kinds of objectives exist:

* **Gate objectives** are functions of the target log-probability ``logp = log p`` only
  (plus detached per-row statistics). Their logit gradient is ``s * (P - δ_y)`` with
  ``s = -dL/dlogp`` (paper Eq. 6 / Lemma 2, Eq. 29). The engines derive ``s`` from the
  declaration by differentiating the ``[n]``-sized loss with respect to ``logp``; they never
  differentiate through the ``[n, V]`` logits.
* **Distribution objectives** need the whole distribution ``P`` (and maybe a reference or
  teacher distribution). They declare their loss as cross-entropies to detached targets
  (:class:`CrossEntropyTargets`), whose logit gradient ``c P - Q`` is closed form as well.
* **Autograd objectives** are any other loss of the differentiable ``log P`` (returning
  :class:`PerTokenLoss`); the engines differentiate them with autograd.

An objective is one decorated function, see :mod:`deft.objectives.registry`; what it may need
besides the logits (a reference or teacher model, old log-probabilities, batch statistics) is
typed in :mod:`deft.objectives.needs`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch

__all__ = ["Param", "PerTokenLoss", "CrossEntropyTargets", "Tokens", "Dists", "ObjectiveDef", "Objective",
           "deformed_log_loss", "Terms", "Target", "REFERENCE_PREFIXES", "reference_alias"]

#: the reference repository's name prefixes -> (objective, mask side, parameter name): ``GeneralFamily-a``
#: is ``power`` with ``alpha=a``, ``Only*-tau`` a probability mask normalised by the selected tokens
REFERENCE_PREFIXES = {
    "GeneralFamily-": ("power", None, "alpha"),
    "OnlyTopP-": ("p", "top", None),
    "OnlyBottomP-": ("p", "bottom", None),
    "OnlyTopLogP-": ("nll", "top", None),
    "OnlyBottomLogP-": ("nll", "bottom", None),
}


@dataclass(frozen=True)
class Param:
    """One parameter of an objective: default value (its type is the parameter's type),
    help text and the allowed range or choices."""

    default: object
    help: str
    min: Optional[float] = None
    max: Optional[float] = None
    choices: Optional[tuple] = None
    min_exclusive: bool = False

    def parse(self, objective: str, name: str, raw: object) -> object:
        """Convert ``raw`` (a string from a spec, or a Python value) and check its range."""
        kind = type(self.default)
        try:
            if kind is bool:
                value = raw if isinstance(raw, bool) else str(raw).lower() in ("1", "true", "yes")
            elif kind is int:
                value = int(raw) if not isinstance(raw, float) or raw.is_integer() else int("x")
            else:
                value = kind(raw)
        except (TypeError, ValueError):
            raise ValueError(
                f"objective '{objective}': parameter '{name}' must be {kind.__name__}, got {raw!r}"
            ) from None
        if kind is float and not math.isfinite(value):
            raise ValueError(f"objective '{objective}': parameter '{name}' must be finite, got {raw!r}")
        if self.choices is not None and value not in self.choices:
            raise ValueError(
                f"objective '{objective}': parameter '{name}' must be one of "
                f"{', '.join(map(str, self.choices))}, got {raw!r}"
            )
        if self.min is not None and (value < self.min or (self.min_exclusive and value == self.min)):
            op = ">" if self.min_exclusive else ">="
            raise ValueError(f"objective '{objective}': parameter '{name}' must be {op} {self.min}, got {raw!r}")
        if self.max is not None and value > self.max:
            raise ValueError(f"objective '{objective}': parameter '{name}' must be <= {self.max}, got {raw!r}")
        return value


@dataclass
class PerTokenLoss:
    """What a gate or autograd objective returns for ``n`` loss tokens.

    ``loss [n]`` is the per-token loss value (differentiable). ``focus [n]`` is the exponent
    ``a`` of the deformed-log loss ``(1 - p^a)/a`` where the objective has one.
    """

    loss: torch.Tensor
    focus: Optional[torch.Tensor] = None


class _Inputs:
    """The extra inputs of an objective (:mod:`deft.objectives.needs`), read as attributes by
    their field name (``tokens.old_logprobs``, ``dists.teacher_logP``)."""

    def __getattr__(self, name: str):
        # only called when normal lookup fails: a need's field, or a real AttributeError
        from .needs import NEEDS

        need = next((n for n in NEEDS.values() if n.field == name), None)
        if need is None:
            raise AttributeError(f"{type(self).__name__!s} has no attribute {name!r}")
        value = self.__dict__.get("_inputs", {}).get(name)
        if value is None and need.source == "model" and isinstance(self, Tokens):
            raise ValueError(f"a gate objective sees only log p, not '{name}' ({need.what}); register it with kind "
                             "'distribution' or 'autograd'")
        if value is None:
            raise ValueError(f"the objective reads '{name}' ({need.what}) without declaring needs=('{need.name}',)")
        return value


class Tokens(_Inputs):
    """Per-token view handed to gate objectives.

    ``logp [n]`` is ``log p`` (fp32, differentiable). Everything else is detached and
    computed lazily from the fp32 logits ``[n, V]`` of the same rows, so an objective only
    pays for the statistics it uses. ``inputs`` maps need fields (``old_logprobs [n]``,
    ``batch_mean_p``, ...) to their values for these rows; call-wide statistics such as
    ``batch_mean_p`` come from the engines (``deft.fused.common.STATISTIC_PROVIDERS``).
    """

    def __init__(
        self,
        logp: torch.Tensor,
        logits: torch.Tensor,
        lse: torch.Tensor,
        *,
        probs: Optional[torch.Tensor] = None,
        inputs: Optional[dict] = None,
        old_logprobs: Optional[torch.Tensor] = None,
        batch_mean_p: Optional[torch.Tensor] = None,
    ):
        self.logp = logp
        self._logits = logits
        self._lse = lse
        self._probs = probs  # softmax(logits) when the caller already has it [n, V]
        self._inputs = dict(inputs or {})
        # the two built-in fields may also be given as keywords (the form before the needs registry)
        for key, value in (("old_logprobs", old_logprobs), ("batch_mean_p", batch_mean_p)):
            if value is not None:
                self._inputs[key] = value
        self._cache: dict = {}

    @property
    def _old_logprobs(self):  # former attribute, read by subclasses written before the needs registry
        return self._inputs.get("old_logprobs")

    @property
    def _batch_mean_p(self):  # former attribute, as above
        return self._inputs.get("batch_mean_p")

    def with_logp(self, logp: torch.Tensor) -> "Tokens":
        """The same rows with another ``logp`` tensor (e.g. a fresh leaf), sharing the cache."""
        other = Tokens(logp, self._logits, self._lse, probs=self._probs, inputs=self._inputs)
        other._cache = self._cache
        return other

    @property
    def p(self) -> torch.Tensor:
        """Target probability ``sg(p)`` ``[n]``."""
        return self.logp.detach().exp()

    @property
    def vocab_size(self) -> int:
        return self._logits.shape[-1]

    @property
    def sum_p2(self) -> torch.Tensor:
        """``Σ_v P_v²`` ``[n]`` = ``exp(logsumexp(2z) - 2 lse)`` (paper Eq. 20), detached."""
        if "sum_p2" not in self._cache:
            if self._probs is not None:
                self._cache["sum_p2"] = row_dot(self._probs, self._probs)
            else:
                z = self._logits.detach()
                self._cache["sum_p2"] = torch.exp(torch.logsumexp(2.0 * z, dim=-1) - 2.0 * self._lse.detach())
        return self._cache["sum_p2"]

    @property
    def entropy(self) -> torch.Tensor:
        """Shannon entropy ``-Σ_v P_v log P_v`` ``[n]`` in nats, detached."""
        if "entropy" not in self._cache:
            if self._probs is not None:  # H = lse - Σ_v P_v z_v
                z, lse = self._logits.detach(), self._lse.detach()
                entropy = (lse - row_dot(self._probs, z)).clamp_min(0.0)
                bad = ~torch.isfinite(entropy)  # rows with -inf logits: 0 * -inf
                if bad.any():
                    entropy[bad] = row_entropy(z[bad], lse[bad])
                self._cache["entropy"] = entropy
            else:
                self._cache["entropy"] = row_entropy(self._logits.detach(), self._lse.detach())
        return self._cache["entropy"]

    def topk_entropy(self, k: int) -> torch.Tensor:
        """Entropy of the renormalised top-``k`` probabilities ``[n]``, detached (EAFT)."""
        key = ("topk_entropy", k)
        if key not in self._cache:
            top = torch.topk(self._logits.detach(), min(k, self.vocab_size), dim=-1).values
            logq = torch.log_softmax(top, dim=-1)
            self._cache[key] = -(logq.exp() * logq).sum(-1)
        return self._cache[key]


@dataclass
class CrossEntropyTargets:
    """What a distribution objective returns: its loss as cross-entropies to detached targets.

    For ``n`` loss tokens (``g = P - Q``, the logit-gradient form of the paper's Appendix B)::

        L = label * (-log p) + Σ_k w_k * CE(Q_k ‖ P) + uniform * CE(U ‖ P) + const
        CE(Q ‖ P) = -Σ_v Q_v log P_v,   U = 1/V

    where ``Q_k = exp(logQ_k)`` are detached distributions ``[n, V]`` given in ``dists`` as
    ``(w_k, logQ_k)`` pairs, and ``label``, ``w_k``, ``uniform``, ``const`` are detached
    ``[n]`` tensors or floats (``w_k`` may be negative, as in GEM). Every term is detached, so
    the logit gradient is closed form and the engines never differentiate through ``[n, V]``::

        dL/dz = (label + Σ_k w_k + uniform) P - label δ_y - Σ_k w_k Q_k - uniform / V
    """

    label: object = 0.0
    dists: tuple = ()
    uniform: object = 0.0
    const: object = 0.0


class Dists(_Inputs):
    """Per-token view handed to distribution objectives; everything is detached fp32, except
    ``logP`` and ``logp`` for ``"autograd"`` objectives, which are differentiable.

    ``logits [n, V]`` and their ``lse [n]`` are the model's; ``logP [n, V]`` (= logits - lse)
    is formed on each use. ``inputs`` maps need fields to values for these rows: e.g.
    ``ref_logP`` / ``teacher_logP``, the reference's / teacher's log-distributions ``[n, V]``.
    """

    def __init__(self, logits, lse, labels, *, logP=None, inputs: Optional[dict] = None):
        self.logits = logits
        self.lse = lse
        self.labels = labels
        self._logP = logP  # differentiable log P [n, V] for "autograd" objectives
        if logP is not None:
            self.logp = logP.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
        else:
            self.logp = logits.gather(-1, labels.unsqueeze(-1)).squeeze(-1) - lse
        self._inputs = dict(inputs or {})

    @property
    def p(self) -> torch.Tensor:
        """Target probability ``p`` ``[n]``."""
        return self.logp.exp()

    @property
    def vocab_size(self) -> int:
        return self.logits.shape[-1]

    @property
    def logP(self) -> torch.Tensor:
        """``log P = z - lse`` ``[n, V]``: differentiable for ``"autograd"`` objectives, else
        detached (a new ``[n, V]`` tensor on each access)."""
        if self._logP is not None:
            return self._logP
        return self.logits - self.lse.unsqueeze(-1)


def row_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``Σ_v a_v b_v`` per row ``[n]`` of two ``[n, V]`` tensors, without an ``[n, V]`` temporary."""
    return torch.bmm(a.unsqueeze(1), b.unsqueeze(2)).reshape(a.shape[0])


def row_entropy(logits: torch.Tensor, lse: torch.Tensor) -> torch.Tensor:
    """``H = lse - Σ_v P_v z_v`` for fp32 logits ``[n, V]`` and their logsumexp ``[n]``."""
    probs = torch.exp(logits - lse.unsqueeze(-1))
    # where P underflows to 0, z may be -inf: treat 0 * -inf as 0
    pz = torch.where(probs > 0, probs * logits, torch.zeros((), dtype=logits.dtype, device=logits.device))
    return (lse - pz.sum(-1)).clamp_min(0.0)


def entropy_of(logP: torch.Tensor) -> torch.Tensor:
    """Shannon entropy ``-Σ_v P_v log P_v`` ``[n]`` of log-probabilities ``[n, V]``."""
    plogp = (logP.exp() * logP).nan_to_num(nan=0.0)
    return (-plogp.sum(-1)).clamp_min(0.0)


def deformed_log_loss(logp: torch.Tensor, a: torch.Tensor | float) -> torch.Tensor:
    """``L_a(p) = (1 - p^a) / a = -expm1(a log p) / a`` (paper Eq. 10), ``-log p`` at ``a = 0``.

    Computed in the log domain so that tiny ``a`` (DEFT's ``a >= 1/V``) and tiny ``p`` stay
    exact; the gate is ``-dL/dlogp = p^a`` (Eq. 11-12).
    """
    a = torch.as_tensor(a, dtype=logp.dtype, device=logp.device)
    zero = a == 0
    safe_a = torch.where(zero, torch.ones_like(a), a)
    return torch.where(zero, -logp, -torch.expm1(safe_a * logp) / safe_a)


@dataclass(frozen=True)
class ObjectiveDef:
    """A registered objective.

    ``name``; ``kind``: ``"gate"`` (a function of ``log p``: takes :class:`Tokens`, returns
    :class:`PerTokenLoss`), ``"distribution"`` (takes :class:`Dists`, returns
    :class:`CrossEntropyTargets`) or ``"autograd"`` (takes :class:`Dists` with a differentiable
    ``logP``, returns :class:`PerTokenLoss`); ``fn`` the decorated function; ``summary`` one line;
    ``params`` name -> :class:`Param`; ``needs`` names of :data:`deft.objectives.NEEDS` entries;
    ``has_focus`` whether it reports a focus index.
    """

    name: str
    kind: str
    fn: Callable
    summary: str
    params: dict = field(default_factory=dict)
    needs: frozenset = frozenset()  # names in deft.objectives.needs.NEEDS
    has_focus: bool = False


@dataclass(frozen=True)
class Objective:
    """An objective with its parameter values bound, e.g. from the spec ``power:alpha=0.5``.

    ``mask`` optionally restricts a gate objective to tokens with ``sg(p) >= tau`` (``"top"``)
    or ``sg(p) <= tau`` (``"bottom"``); see :func:`deft.objectives.parse_objective`.
    ``normalizer`` says what a mean divides by: ``"tokens"`` (every loss token, the native
    ``obj[p>=tau]`` syntax) or ``"selected"`` (only the tokens the mask keeps: the reference
    code's ``OnlyTopP-tau`` family, which divides the masked sum by the selected count).
    """

    definition: ObjectiveDef
    values: tuple = ()  # ((name, value), ...)
    mask: Optional[tuple] = None  # ("top" | "bottom", tau)
    normalizer: str = "tokens"  # "tokens" | "selected"

    @property
    def name(self) -> str:
        return self.definition.name

    @property
    def kind(self) -> str:
        return self.definition.kind

    @property
    def needs(self) -> frozenset:
        return self.definition.needs

    @property
    def kwargs(self) -> dict:
        return dict(self.values)

    @property
    def spec(self) -> str:
        """Canonical spec string, parseable back to an equal objective."""
        if self.normalizer == "selected":  # only the reference aliases normalise by the selected tokens
            return reference_alias(self)
        out = self.name
        if self.values:
            out += ":" + ",".join(f"{k}={v}" for k, v in self.values)
        if self.mask is not None:
            out += f"[p{'>=' if self.mask[0] == 'top' else '<='}{self.mask[1]}]"
        return out

    def __str__(self) -> str:
        return self.spec

    def selected(self, p: torch.Tensor) -> torch.Tensor:
        """Boolean ``[n]``: the tokens the probability mask keeps (all when there is none)."""
        if self.mask is None:
            return torch.ones_like(p, dtype=torch.bool)
        return p >= self.mask[1] if self.mask[0] == "top" else p <= self.mask[1]

    def gate_terms(self, tokens: Tokens) -> PerTokenLoss:
        """Evaluate a gate objective, applying the probability mask if any."""
        terms = self.definition.fn(tokens, **self.kwargs)
        if self.mask is not None:
            keep = self.selected(tokens.p)
            terms = PerTokenLoss(terms.loss * keep.to(terms.loss.dtype), terms.focus)
        return terms

    def dist_target(self, dists: Dists) -> CrossEntropyTargets:
        """Evaluate a distribution objective: its :class:`CrossEntropyTargets`."""
        return self.definition.fn(dists, **self.kwargs)

    def autograd_terms(self, dists: Dists) -> PerTokenLoss:
        """Evaluate an ``"autograd"`` objective on a differentiable ``dists.logP``."""
        return self.definition.fn(dists, **self.kwargs)


# former names, kept so that objectives written against them still register
Terms = PerTokenLoss
Target = CrossEntropyTargets


def reference_alias(objective: Objective) -> str:
    """The reference-code name (``OnlyTopP-0.1``) of an objective normalised by its selected tokens."""
    for prefix, (target, side, _) in REFERENCE_PREFIXES.items():
        if side is not None and objective.mask is not None and (target, side) == (objective.name, objective.mask[0]):
            return f"{prefix}{objective.mask[1]}"
    raise ValueError(f"objective '{objective.name}' with normalizer 'selected' has no reference name")
