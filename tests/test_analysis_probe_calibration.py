"""The probe's regime thresholds against the committed replication (docs/results/regimes/): each
set built for a regime (model-strong: the embedded model's own greedy answers; intermediate:
reasoning-gym word_sorting; weak: FigFont) is classified as that regime by the current thresholds,
from the base model's measured mean focus and mean p, with a margin on either side. A change of
:data:`deft.analysis.probe.STRONG_FOCUS` / ``WEAK_FOCUS`` that contradicts the evidence fails here."""

import json
from pathlib import Path

import pytest

from deft.analysis.probe import STRONG_FOCUS, WEAK_FOCUS, regime_of

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results" / "regimes"


def _probe(regime: str) -> dict:
    path = RESULTS / regime / "probe" / "probe.json"
    return json.loads(path.read_text())


@pytest.mark.parametrize("regime", ["strong", "intermediate", "weak"])
def test_each_replication_set_is_classified_as_the_regime_it_was_built_for(regime):
    probe = _probe(regime)
    assert probe["model"] == "smollm2-135m" and probe["tokens"] >= 200
    assert regime_of(probe["mean_focus"], probe["mean_p"]) == regime == probe["regime"]


def test_thresholds_lie_between_the_measured_sets_with_a_margin():
    focus = {r: _probe(r)["mean_focus"] for r in ("strong", "intermediate", "weak")}
    assert focus["weak"] + 0.05 < WEAK_FOCUS < focus["intermediate"] - 0.05
    assert focus["intermediate"] + 0.05 < STRONG_FOCUS < focus["strong"] - 0.05
