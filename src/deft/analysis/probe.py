"""``deft probe``: which regime is my model in on this data? One forward pass, no training.

The paper (Sections 3.2, 6, Figure 5) sorts SFT settings by how much the pretrained prior
already agrees with the data: **model-strong** (NuminaMath on math models), **model-intermediate**
(m23K medical) and **model-weak** (FigFont puzzles). The best objective depends on the regime
(Tables 1-3), and DEFT's focus index ``a = Σ_v P_v²`` (Eq. 20) at the start of training is the
quantity the paper uses to tell them apart: Figure 5 shows it starting near **0.65** in the
model-strong regime and near **0.05** (0.04 in the text) in the model-weak one.

Regime verdict (:func:`regime_of`), on the mean focus over the response tokens:

* ``strong`` if mean focus ``>= 0.45`` (:data:`STRONG_FOCUS`). In Figure 5 the model-weak run
  climbs from 0.04 to about 0.45 over its whole training, so a model that *starts* at 0.45 is
  already where full training on a weak-regime task ends, and 0.45 leaves a margin of 0.2 below
  the model-strong anchor 0.65. It is also just below ``a = 1/2`` (the Hellinger point of Eq. 10),
  above which DEFT's gate ``p^a`` is closer to ``-p`` (sharpening) than to NLL (coverage).
* ``weak`` if mean focus ``< 0.2`` (:data:`WEAK_FOCUS`): four times the model-weak anchor 0.05
  and about the geometric midpoint of the two anchors (``√(0.05·0.65) ≈ 0.18``); there DEFT's
  gate is NLL-like for most tokens (``p^0.2 >= 0.25`` down to ``p = 10⁻³``).
* ``intermediate`` in between. The paper does not report the m23K starting focus, so this band
  is the interpolation between the two published anchors.

**Calibration.** The thresholds are checked against the replication in ``docs/results/regimes``
(tests/test_analysis_probe_calibration.py): on the embedded SmolLM2-135M-Instruct, a set of the
model's own answers measures focus 0.58 (strong), reasoning-gym word_sorting 0.35 (intermediate)
and FigFont 0.08 (weak), each at least 0.05 from a threshold.

**What the verdict predicts** (tested by the same file against that replication's per-seed
numbers, 3 seeds, paired t-tests with a Holm-Bonferroni correction over each regime's
objective x metric comparisons to NLL): in regime R, no objective of
``RECOMMENDATIONS[R]["objectives"]`` loses to NLL outside the noise on :data:`HEADLINE_METRIC`
(held-out NLL: the one learning metric every regime of the replication has; it is NLL's own
criterion, so the test is demanding for the others), and every objective of ``avoid`` that was
run loses to NLL outside the noise on at least one of :data:`LEARNING_METRICS`. The strong
recommendation used to include ``-p`` (the paper's Table 1 favours it on accuracy); the
replication contradicted that (``-p``'s held-out NLL was worse than NLL's after the correction)
while it raised the mean target probability more than NLL, so ``-p`` is now named in the text as
the option for sharpening, not recommended. The prediction is narrow: a 135M model, 8 steps,
data-order noise only (docs/results/regimes/README.md, "What this replication cannot show").
Evidence v2 (docs/results/v2: 256 held-out records tested one by one on their content tokens,
two learning rates) tests the intermediate verdict again, as non-inferiority: no recommended
objective's content NLL exceeds NLL's by more than :data:`NONINFERIORITY_NATS` (the upper end of
the per-record bootstrap interval). With that power every objective other than NLL is measurably
worse on NLL's own criterion, so a margin is what can be predicted; DEFT was worse by 0.10-0.18
nats and left the intermediate recommendation (Cayley stayed within 0.012).

How mean ``p`` enters: the paper notes that ``a`` "closely mirrors" the mean target probability
(Figure 5), and per token ``Σ_v P_v² >= p²``. When mean ``p`` is less than half the mean focus
(:data:`P_FOCUS_RATIO`), the model is concentrated but on *other* tokens than the data's — the
confident-conflict signature, not prior knowledge — and the verdict is lowered by one level
(strong -> intermediate, intermediate -> weak). The Cayley focus of the mean ``p``
(``α*(p̄)``, Eq. 17) is reported as the point-wise counterpart of the distribution-level focus.

**Confident conflicts** (EAFT, Diao et al. 2026, cited as [3] by the paper: tokens where the model
is confident — low entropy — but the target has low probability): here a token with
``p < 0.1`` (:data:`CONFLICT_P`) and entropy ``< 1 nat`` (:data:`CONFLICT_ENTROPY`), i.e. a
predictive distribution whose effective number of candidates ``exp(H)`` is below ``e ≈ 2.7``
while the target gets less than a tenth of the mass.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from ..io import atomic_write_text

if TYPE_CHECKING:  # torch is imported where it is used: 'deft --help' reads the constants here
    import torch

__all__ = [
    "STRONG_FOCUS", "WEAK_FOCUS", "P_FOCUS_RATIO", "CONFLICT_P", "CONFLICT_ENTROPY", "HIST_EDGES", "REGIMES",
    "RECOMMENDATIONS", "HEADLINE_METRIC", "LEARNING_METRICS", "NONINFERIORITY_NATS", "regime_of",
    "summarize_token_stats", "format_summary",
    "write_probe",
]

STRONG_FOCUS = 0.45
WEAK_FOCUS = 0.2
P_FOCUS_RATIO = 0.5
CONFLICT_P = 0.1
CONFLICT_ENTROPY = 1.0
CONFLICT_NOTE_SHARE = 0.05  # a share above this adds a note to the recommendation
HIST_EDGES = (0.0, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 0.5, 0.9, 1.0)
REGIMES = ("strong", "intermediate", "weak")
# what a recommendation predicts (module docstring): metric name -> lower is better
HEADLINE_METRIC = "heldout_nll"
NONINFERIORITY_NATS = 0.05  # per content token, about 3% of the content NLL after training in evidence v2
LEARNING_METRICS = {"heldout_nll": True, "heldout_mean_p": False, "learned %": False}

RECOMMENDATIONS = {
    "strong": {
        "objectives": ["deft", "cayley", "nll"],
        "avoid": [],
        "text": "Model-strong: the prior already covers the data, so sharpening can pay. In the paper's Table 1 "
                "(NuminaMath) DEFT, -p and Cayley-Trans beat NLL on accuracy on every model (e.g. Qwen2.5-Math-1.5B "
                "Average@16: -p 32.1, DEFT 30.4, Cayley 26.0 vs NLL 16.8); EAFT is close to NLL here because "
                "confident conflicts are rare. Try 'deft' first and compare with 'nll'. On the embedded 135M model "
                "(docs/results/regimes, 3 seeds, Holm-corrected) -p raised the held-out mean p more than NLL but "
                "worsened held-out NLL and drifted further from the base model, all outside the noise: use 'p' "
                "when greedy sharpness is what counts, and measure the tail and forgetting too "
                "('deft compare --heldout FILE').",
    },
    "intermediate": {
        "objectives": ["cayley", "nll"],
        "avoid": [],
        "text": "Model-intermediate: coverage and sharpening matter about equally and the objectives differ "
                "little. In the paper's Table 2 (m23K medical) DEFT has the best average on LLaMA-3.1-8B "
                "(52.0 vs 50.2 NLL, 49.8 -p) and beats -p on every model; NLL remains a safe baseline. "
                "On the embedded 135M model (docs/results/v2, word_sorting, two learning rates, tested per "
                "held-out record) DEFT raised the content tokens' mean p but worsened their NLL by 0.1-0.2 nats "
                "outside the noise, and at lr 2e-4 its answers no longer stopped; Cayley stayed within 0.01 nats "
                "of NLL. Use 'nll' or 'cayley'; try 'deft' when sharper answers matter, and measure the tail "
                "('deft compare --heldout FILE').",
    },
    "weak": {
        "objectives": ["deft", "cayley", "nll"],
        "avoid": ["p", "dft"],
        "text": "Model-weak: most target tokens have low probability, so objectives that gate by p starve. In "
                "the paper's Table 3 (FigFont) -p collapses (Jaro-Winkler 7.7 on LLaMA-3.2-3B vs 40.4 NLL, "
                "60.2 DEFT) while DEFT is best overall and NLL stays strong. Use 'deft' or 'nll'; avoid 'p' "
                "and 'dft' (same gradient as -p). On FigFont with the embedded 135M model (docs/results/regimes, "
                "3 seeds) -p learned fewer held-out tokens than NLL, outside the noise after the Holm correction, "
                "and its greedy answers scored Jaro-Winkler 0 in 2 of 3 seeds.",
    },
}


def regime_of(mean_focus: float, mean_p: Optional[float] = None) -> str:
    """Regime verdict ``"strong"`` / ``"intermediate"`` / ``"weak"`` from the mean DEFT focus
    ``mean Σ_v P_v²`` over response tokens and, optionally, the mean target probability.

    ``strong`` if ``mean_focus >= STRONG_FOCUS`` (0.45), ``weak`` if ``< WEAK_FOCUS`` (0.2), else
    ``intermediate``; lowered by one level when ``mean_p < P_FOCUS_RATIO * mean_focus`` (the model
    is concentrated on tokens other than the data's). See the module docstring for the reasons.
    """
    if not (math.isfinite(mean_focus) and 0.0 <= mean_focus <= 1.0 + 1e-6):
        raise ValueError(f"mean_focus must be in [0, 1], got {mean_focus}")
    level = 0 if mean_focus >= STRONG_FOCUS else (2 if mean_focus < WEAK_FOCUS else 1)
    if mean_p is not None:
        if not (math.isfinite(mean_p) and 0.0 <= mean_p <= 1.0 + 1e-6):
            raise ValueError(f"mean_p must be in [0, 1], got {mean_p}")
        if mean_p < P_FOCUS_RATIO * mean_focus:
            level = min(level + 1, 2)
    return REGIMES[level]


def _histogram(p: "torch.Tensor") -> dict:
    import torch

    edges = torch.tensor(HIST_EDGES, dtype=torch.float64)
    idx = (torch.bucketize(p.double(), edges, right=True) - 1).clamp(0, len(HIST_EDGES) - 2)
    counts = torch.bincount(idx, minlength=len(HIST_EDGES) - 1).tolist()
    total = max(p.numel(), 1)
    return {"edges": list(HIST_EDGES), "counts": counts, "shares": [c / total for c in counts]}


def summarize_token_stats(stats: dict) -> dict:
    """The probe summary of per-token statistics (:func:`deft.recipes.token_stats.collect_token_stats`).

    Keys: ``tokens``, ``mean_p``, ``median_p``, ``mean_focus`` (``mean Σ_v P_v²``), ``cayley_focus_of_mean_p``
    (``α*(p̄) = (1-√(1-p̄))/(1+√(1-p̄))``, Eq. 17), ``mean_entropy`` (nats), ``mean_nll``
    (``mean -log p``), ``frac_p_below_1e-3``, ``frac_p_above_0.5``, ``histogram`` (``edges``, ``counts``,
    ``shares`` of ``p`` over :data:`HIST_EDGES`), ``confident_conflicts`` (``share``, ``count`` and the
    thresholds), ``regime``, ``regime_by_focus`` (before the mean-p check), ``thresholds`` and
    ``recommendation`` (``objectives``, ``avoid``, ``text``).
    """
    import torch

    from ..objectives import cayley_focus

    p = stats["p"].double()
    n = p.numel()
    if n == 0:
        raise ValueError("no response tokens to summarise")
    entropy = stats["entropy"].double()
    focus = stats["focus"].double()
    logp = stats["logp"].double() if "logp" in stats else p.clamp_min(1e-300).log()
    mean_p = float(p.mean())
    mean_focus = float(focus.mean())
    conflicts = (p < CONFLICT_P) & (entropy < CONFLICT_ENTROPY)
    regime = regime_of(min(mean_focus, 1.0), min(mean_p, 1.0))
    by_focus = regime_of(min(mean_focus, 1.0))
    rec = dict(RECOMMENDATIONS[regime])
    notes = []
    if regime != by_focus:
        notes.append(f"mean p ({mean_p:.3f}) is less than {P_FOCUS_RATIO:g} x the mean focus ({mean_focus:.3f}): "
                     "the model is confident about other tokens than the data's, so the verdict was lowered from "
                     f"'{by_focus}' to '{regime}'.")
    share = float(conflicts.double().mean())
    if share >= CONFLICT_NOTE_SHARE:
        notes.append(f"{share:.1%} of the tokens are confident conflicts (p < {CONFLICT_P:g}, entropy < "
                     f"{CONFLICT_ENTROPY:g} nat): DEFT and EAFT damp their gradients (paper Section 6.3), NLL "
                     "amplifies them.")
    rec["notes"] = notes
    return {
        "tokens": int(n),
        "mean_p": mean_p,
        "median_p": float(p.median()),
        "mean_focus": mean_focus,
        "cayley_focus_of_mean_p": float(cayley_focus(
            torch.tensor(mean_p, dtype=torch.float64).clamp_min(1e-300).log())),
        "mean_entropy": float(entropy.mean()),
        "mean_nll": float(-logp.mean()),
        "frac_p_below_1e-3": float((p < 1e-3).double().mean()),
        "frac_p_above_0.5": float((p > 0.5).double().mean()),
        "histogram": _histogram(p),
        "confident_conflicts": {"share": share, "count": int(conflicts.sum()), "p_below": CONFLICT_P,
                                "entropy_below_nats": CONFLICT_ENTROPY},
        "regime": regime,
        "regime_by_focus": by_focus,
        "thresholds": {"strong_focus_at_least": STRONG_FOCUS, "weak_focus_below": WEAK_FOCUS,
                       "lower_one_level_if_mean_p_below_x_focus": P_FOCUS_RATIO,
                       "paper_anchors": {"strong": 0.65, "weak": 0.05, "source": "Figure 5"}},
        "recommendation": rec,
    }


def write_probe(summary: dict, stats: Optional[dict], out) -> Path:
    """Write ``out/probe.json`` (and ``out/token_stats.npz`` when ``stats`` is given)."""
    from .token_stats import save_token_stats

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if stats is not None:
        save_token_stats(stats, out / "token_stats.npz")
    return atomic_write_text(out / "probe.json", json.dumps(summary, indent=1) + "\n")


def format_summary(summary: dict) -> str:
    """A human-readable report of a probe summary (:func:`deft.recipes.probe.probe`)."""
    h = summary["histogram"]
    cc = summary["confident_conflicts"]
    lines = [
        f"model {summary.get('model', '?')} on {summary.get('data', '?')}: {summary.get('examples', '?')} examples, "
        f"{summary['tokens']} response tokens",
        f"  mean p             {summary['mean_p']:.4g}   (median {summary['median_p']:.4g}, mean -log p "
        f"{summary['mean_nll']:.3f})",
        f"  mean DEFT focus    {summary['mean_focus']:.4g}   (sum of squared probabilities, paper Eq. 20)",
        f"  Cayley focus of p  {summary['cayley_focus_of_mean_p']:.4g}   (alpha*(mean p), Eq. 17)",
        f"  mean entropy       {summary['mean_entropy']:.3f} nats",
        f"  confident conflicts {cc['share']:.2%}  "
        f"(p < {cc['p_below']:g} and entropy < {cc['entropy_below_nats']:g} nat)",
        "  p histogram:",
    ]
    edges = h["edges"]
    for lo, hi, share in zip(edges[:-1], edges[1:], h["shares"]):
        bar = "#" * int(round(share * 40))
        lines.append(f"    [{lo:<7g}, {hi:<6g}) {share:7.2%} {bar}")
    t = summary["thresholds"]
    rec = summary["recommendation"]
    lines += [
        f"regime: model-{summary['regime']}  (mean focus >= {t['strong_focus_at_least']:g}: strong, "
        f"< {t['weak_focus_below']:g}: weak; paper Figure 5 anchors 0.65 strong / 0.05 weak)",
        f"recommended objectives: {', '.join(rec['objectives'])}"
        + (f"; avoid: {', '.join(rec['avoid'])}" if rec["avoid"] else ""),
        "  " + rec["text"],
    ]
    lines += ["  note: " + note for note in rec.get("notes", [])]
    return "\n".join(lines)
