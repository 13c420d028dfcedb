"""What an objective may need besides the model's own logits: one typed registry.

An objective declares ``needs=("teacher",)``; each name is an entry of :data:`NEEDS` saying how
the input is provided, which field of :class:`~deft.objectives.Tokens` /
:class:`~deft.objectives.Dists` it fills, which option supplies it and how to say it is
missing. The engines (:func:`deft.token_loss`, :func:`deft.fused_token_loss`), the model patch
(:func:`deft.model.fused_forward.patch_fused_loss`) and the trainer iterate over these entries;
nothing else names an input kind.

Sources (:attr:`Need.source`):

* ``"model"``: a frozen model's distribution over the vocabulary. The plain engine takes its
  logits ``<name>_logits [..., V]``; the fused engine its final hidden states
  ``<name>_hidden [..., H']``, LM-head weight ``<name>_weight [V, H']`` (and optional
  ``<name>_bias [V]``), forming its log-probabilities chunk by chunk. Fills ``<field>`` =
  ``log π [n, V]`` in :class:`Dists` (distribution and autograd objectives only).
* ``"label_logprobs"``: a frozen model's log-probability of each label ``[...]``; the engines
  take the tensor ``<name>``, the model patch computes it from a frozen snapshot.
* ``"batch"``: any other per-token tensor ``[...]`` the batch carries (e.g. advantages); the
  engines take ``<name>``, the patched forward takes it as a keyword of the call, aligned with
  ``input_ids`` and shifted like the labels.
* ``"statistic"``: a statistic over all loss tokens of the call, computed by the engine.

Adding an input kind is one :func:`register_need` call (plus, for a new ``"statistic"``, its
provider in the fused engine); objectives read it as ``tokens.<field>`` / ``dists.<field>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

__all__ = ["Need", "NEEDS", "SOURCES", "register_need", "missing_error"]

SOURCES = ("model", "label_logprobs", "batch", "statistic")


@dataclass(frozen=True)
class Need:
    """One kind of input an objective may need.

    ``name``: the name objectives list in ``needs`` and the prefix of the engine arguments.
    ``what``: what it is, for messages ("a teacher model's distribution").
    ``source``: how it is provided (see the module docstring).
    ``field``: the attribute of :class:`Tokens` / :class:`Dists` it fills.
    ``option``: the training option that supplies it (``teacher_model``), if any.
    ``patch_arg``: the keyword of ``patch_fused_loss`` that supplies its frozen model, if any.
    ``default``: how the trainer supplies it when ``option`` is unset, for messages and docs.
    """

    name: str
    what: str
    source: str
    field: str
    option: Optional[str] = None
    patch_arg: Optional[str] = None
    default: Optional[str] = None

    def arguments(self, engine: str) -> tuple[str, ...]:
        """Keyword arguments that carry this input into ``engine`` (``"plain"`` or ``"fused"``)."""
        if self.source == "statistic":
            return ()
        if self.source != "model":
            return (self.name,)
        if engine == "plain":
            return (f"{self.name}_logits",)
        return (f"{self.name}_hidden", f"{self.name}_weight")

    def how(self, where: str) -> str:
        """How to provide it ``where`` (``"plain"``, ``"fused"``, ``"patch"`` or ``"config"``)."""
        if where in ("plain", "fused"):
            return "pass " + " + ".join(self.arguments(where))
        if where == "patch":
            return f"pass {self.patch_arg}=" if self.patch_arg else f"pass {self.name}=... to the model's forward"
        if self.option:
            return f"set {self.option}" + (f" (default: {self.default})" if self.default else "")
        return self.default or f"give the records a '{self.name}' column"


NEEDS: dict[str, Need] = {}


def register_need(need: Need) -> Need:
    """Add an input kind; its name must be new and its source one of :data:`SOURCES`."""
    if need.source not in SOURCES:
        raise ValueError(f"need '{need.name}': source must be one of {', '.join(SOURCES)}, got {need.source!r}")
    if need.name in NEEDS:
        raise ValueError(f"need '{need.name}' is already registered")
    if any(other.field == need.field for other in NEEDS.values()):
        raise ValueError(f"need '{need.name}': field '{need.field}' is already filled by another need")
    NEEDS[need.name] = need
    return need


register_need(Need("ref", "a reference model's distribution", "model", "ref_logP",
                   option="reference_model", patch_arg="reference",
                   default="a frozen copy of the initial model; with LoRA, the model with its adapter disabled"))
register_need(Need("teacher", "a teacher model's distribution (same vocabulary)", "model", "teacher_logP",
                   option="teacher_model", patch_arg="teacher"))
register_need(Need("old_logprobs", "old-policy log-probabilities of the labels", "label_logprobs", "old_logprobs",
                   patch_arg="old_policy", default="a frozen snapshot of the model, refreshed during training"))
register_need(Need("batch", "the mean target probability over the call's loss tokens", "statistic", "batch_mean_p"))


def missing_error(spec: str, need: Need, where: str) -> ValueError:
    """The one wording of "objective X needs Y" (``where`` as in :meth:`Need.how`)."""
    return ValueError(f"objective '{spec}' needs {need.what}: {need.how(where)}")
