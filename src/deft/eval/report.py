"""The printed results table of :func:`deft.eval.evaluate`."""

from __future__ import annotations

from typing import Any

from .scorers import report_columns

__all__ = ["format_heldout", "format_table"]


def _pct(v: Any) -> str:
    return f"{100 * v:.1f}" if isinstance(v, (int, float)) and not isinstance(v, bool) else "-"


def _rows(results: dict) -> list[tuple[str, dict]]:
    """Benchmarks in order; a group's mean row (``medical``) after its sources; the average last."""
    names = [b for b in results if b not in ("average", "heldout") and not b.startswith("_")]
    rows = [(b, results[b]) for b in names]
    top = [b for b in names if "group" not in results[b]]
    if len(top) > 1 and "average" in results:
        rows.append(("average", results["average"]))
    return rows


def format_table(results: dict, *, title: str | None = None) -> str:
    """A plain-text table of :func:`~deft.eval.runner.evaluate` results: benchmark, n, k,
    Average@k ± standard error, Pass@k, Maj@k, the secondary metrics present, as the scorers
    declare them (``report_columns`` of :func:`~deft.eval.scorers.register_scorer`; figfont's exact and
    jaro_winkler; under ``--protocol paper`` the reference's names: math ``acc`` and ``mean_acc``,
    figfont ``score``, ``normalized_score``, ``jaro_winkler_similarity``), and ``truncated`` (the share of
    answers that hit the token limit) when the results have it; values in percent. Medical
    sources are rows of their own, followed by their mean; the average row closes the table when
    there are several top-level benchmarks."""
    rows = _rows(results)
    extra = [c for c in report_columns() if any(c in r for _, r in rows)]  # the scorers' declared columns
    cut = ["truncated"] if any("truncated" in r for _, r in rows) else []  # beside every accuracy
    header = ["benchmark", "n", "k", "avg@k ± se", "pass@k", "maj@k", *extra, *cut]
    table = [header]
    for name, r in rows:
        avg = f"{_pct(r.get('average_at_k'))} ± {_pct(r.get('stderr'))}"
        k = r.get("k")
        label = f"  {name}" if "group" in r else name
        table.append([label, str(r.get("n", "-")), "-" if k is None else str(k), avg,
                      _pct(r.get("pass_at_k")), _pct(r.get("maj_at_k")), *(_pct(r.get(e)) for e in extra),
                      *(_pct(r.get(c)) for c in cut)])
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]

    def fmt(row):
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))

    rule = "  ".join("-" * w for w in widths)
    lines = [fmt(header), rule]
    for row in table[1:]:
        if row[0] == "average":
            lines.append(rule)
        lines.append(fmt(row))
    if title:
        lines.insert(0, title)
    return "\n".join(lines)


# held-out metrics in print order: (key, label, format); content tokens lead (deft.eval.heldout:
# end-of-turn tokens are learned first and would otherwise dominate the all-token numbers)
HELDOUT_LINES = (
    ("content_nll", "content NLL (nats/token, lower: learned more)", "{:.4f}"),
    ("content_mean_p", "content mean target probability", "{:.4f}"),
    ("content_learned", "content tokens learned (p up by > 0.01 from the base)", "{:.1%}"),
    ("content_forgotten", "content tokens forgotten (p down by > 0.01)", "{:.1%}"),
    ("content_tokens", "content response tokens", "{:d}"),
    ("end_mean_p", "end-of-turn / template mean target probability", "{:.4f}"),
    ("end_nll", "end-of-turn / template NLL (nats/token)", "{:.4f}"),
    ("end_tokens", "end-of-turn / template response tokens", "{:d}"),
    ("heldout_nll", "all tokens: held-out NLL (nats/token)", "{:.4f}"),
    ("heldout_mean_p", "all tokens: held-out mean target probability", "{:.4f}"),
    ("heldout_tokens", "all tokens: held-out response tokens", "{:d}"),
    ("learned", "all tokens: learned (p up by > 0.01 from the base model)", "{:.1%}"),
    ("forgotten", "all tokens: forgotten (p down by > 0.01)", "{:.1%}"),
    ("learned_high", "  learned, base p >= 0.5", "{:.1%}"),
    ("learned_low", "  learned, base p < 0.5", "{:.1%}"),
    ("forgotten_high", "  forgotten, base p >= 0.5", "{:.1%}"),
    ("forgotten_low", "  forgotten, base p < 0.5", "{:.1%}"),
    ("drift_kl", "drift KL(base || model) on general prompts (nats/token)", "{:.4f}"),
    ("retained_nll", "retained NLL of the base model's answers (nats/token)", "{:.4f}"),
    ("ood_answers", "general prompts the base model answered", "{:d}"),
)


def format_heldout(metrics: dict, *, title: str | None = None) -> str:
    """The ``"heldout"`` entry of :func:`~deft.eval.runner.evaluate` results (see
    :func:`deft.eval.heldout.eval_heldout`), one metric per line: content tokens first, then
    end-of-turn / template tokens, then all tokens and the forgetting metrics; ``-`` for a metric
    without tokens (``None``)."""
    lines = [title] if title else []
    for key, label, fmt in HELDOUT_LINES:
        if key in metrics:
            value = "-" if metrics[key] is None else fmt.format(metrics[key])
            lines.append(f"{label:<58} {value}")
    return "\n".join(lines)
