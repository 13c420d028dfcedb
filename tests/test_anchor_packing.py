"""Packed and padded batches against an explicit per-example sum (not only against each other).

Each example is run alone through the unpatched HF model; its loss is written out from the
logits (next-token shift, ``-log softmax`` at the label, DEFT's ``(1 - p^a)/a`` with
``a = Σ_v P_v²``) and summed over examples. The patched model on a padded batch and on packed
rows must give that sum, its token count and its gradient.
"""

import numpy as np
import pytest
import torch

from deft.model.fused_forward import patch_fused_loss
from deft.train.collate import Collator, pack_examples
from tiny_models import tiny_model

PAD = 0
EXAMPLES = [  # prompt tokens carry label -100, the response is learned
    {"input_ids": [5, 9, 14, 3, 22, 7], "labels": [-100, -100, -100, 3, 22, 7]},
    {"input_ids": [11, 4, 8], "labels": [-100, 4, 8]},
    {"input_ids": [30, 31, 32, 33, 34], "labels": [-100, -100, 32, 33, 34]},
    {"input_ids": [40, 41, 42, 43], "labels": [-100, -100, -100, 43]},
]


def per_example_loss(model, objective, weights=None):
    """Σ over examples of (weight x Σ over their loss tokens), from each example's own logits (float64)."""
    total, tokens = 0.0, 0
    for i, ex in enumerate(EXAMPLES):
        w = 1.0 if weights is None else weights[i]
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ex["input_ids"]])).logits[0].double().numpy()
        for t in range(len(ex["input_ids"]) - 1):
            label = ex["labels"][t + 1]
            if label == -100:
                continue
            z = logits[t] - logits[t].max()
            P = np.exp(z) / np.exp(z).sum()
            p = P[label]
            if objective == "nll":
                total += w * -np.log(p)
            else:
                a = (P * P).sum()
                total += w * (1 - p ** a) / a
            tokens += 1
    return total, tokens


def loss_of(model, batch):
    out = model(**batch)
    return out, float(out.loss), int(out.num_tokens)


@pytest.mark.parametrize("objective", ["nll", "deft"])
def test_padded_and_packed_equal_the_explicit_per_example_sum(objective):
    model = tiny_model(seed=3)
    want, want_tokens = per_example_loss(model, objective)
    assert want_tokens == 3 + 2 + 3 + 1
    patch_fused_loss(model, objective)
    _, padded, n_padded = loss_of(model, Collator(PAD)(EXAMPLES))
    rows = pack_examples(EXAMPLES, 10)
    assert len(rows) == 2  # 6+3 and 5+4 tokens
    _, packed, n_packed = loss_of(model, Collator(PAD)(rows))
    assert n_padded == n_packed == want_tokens
    assert padded == pytest.approx(want, rel=1e-4)
    assert packed == pytest.approx(want, rel=1e-4)


def test_packed_gradient_equals_the_sum_of_per_example_gradients():
    model = tiny_model(seed=4)
    per_example = {name: torch.zeros_like(p) for name, p in model.named_parameters()}
    for ex in EXAMPLES:  # plain HF forward and a textbook NLL per example
        model.zero_grad()
        logits = model(input_ids=torch.tensor([ex["input_ids"]])).logits[0, :-1].double()
        labels = torch.tensor(ex["labels"][1:])
        keep = labels != -100
        (-torch.log_softmax(logits[keep], -1).gather(-1, labels[keep, None])).sum().backward()
        for name, p in model.named_parameters():
            per_example[name] += p.grad
    patch_fused_loss(model, "nll")
    model.zero_grad()
    model(**Collator(PAD)(pack_examples(EXAMPLES, 10))).loss.backward()
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, per_example[name].float(), rtol=1e-3, atol=1e-5, msg=name)


def test_per_example_weights_scale_each_example_padded_and_packed():
    weights = [2.0, 0.5, 0.0, 1.5]
    model = tiny_model(seed=5)
    want, _ = per_example_loss(model, "nll", weights)
    patch_fused_loss(model, "nll")
    weighted = [{**ex, "weights": [w] * len(ex["input_ids"])} for ex, w in zip(EXAMPLES, weights)]
    _, padded, _ = loss_of(model, Collator(PAD)(weighted))
    _, packed, _ = loss_of(model, Collator(PAD)(pack_examples(weighted, 10)))
    assert padded == pytest.approx(want, rel=1e-4)
    assert packed == pytest.approx(want, rel=1e-4)
