"""Bad inputs to token_loss / fused_token_loss give a one-line ValueError naming the argument,
before any work: never a raw torch error, never a silent NaN."""

import pytest
import torch

import deft


def case(n=12, hidden=6, vocab=17, seed=0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(n, hidden, generator=g)
    w = torch.randn(vocab, hidden, generator=g)
    y = torch.randint(0, vocab, (n,), generator=g)
    y[0] = -100
    old = torch.log_softmax(torch.randn(n, vocab, generator=g), -1).gather(-1, y.clamp_min(0)[:, None])[:, 0]
    return h, w, y, old


def raises(match, fn, *args, **kwargs):
    with pytest.raises(ValueError, match=match) as info:
        fn(*args, **kwargs)
    assert "\n" not in str(info.value)
    return str(info.value)


def fused(h, w, y, objective="deft", **kw):
    return deft.fused_token_loss(h, w, y, objective, **kw)


def plain(h, w, y, objective="deft", **kw):
    return deft.token_loss(h @ w.T, y, objective, **kw)


@pytest.mark.parametrize("engine,bad", [(fused, float("nan")), (fused, float("inf")), (fused, -float("inf")),
                                        (plain, float("nan")), (plain, float("inf"))])
def test_non_finite_model_inputs_are_refused(engine, bad):
    h, w, y, _ = case()
    h[3, 2] = bad
    if engine is plain:
        z = h @ w.T
        raises("^logits has [0-9]+ NaN or \\+inf value", deft.token_loss, z, y, "deft")
        assert not torch.isfinite(deft.token_loss(z, y, "deft", check_inputs=False))  # opting out
        return
    message = raises("^hidden has 1 NaN or infinite value", fused, h, w, y)
    assert "check_inputs=False" in message
    assert not torch.isfinite(fused(h, w, y, check_inputs=False))


def test_masked_vocabulary_entries_are_allowed():
    """-inf in logits or an LM-head bias masks a vocabulary entry: not an error."""
    h, w, y, _ = case()
    y = torch.where(y == 3, 4, y)
    z = h @ w.T
    z[:, 3] = -float("inf")
    assert torch.isfinite(deft.token_loss(z, y, "deft"))
    assert torch.isfinite(fused(h, w, y, bias=torch.zeros(17).index_fill(0, torch.tensor([3]), -float("inf"))))


def test_non_finite_weight_bias_and_teacher_are_refused():
    h, w, y, _ = case()
    bad_w = w.clone()
    bad_w[2, 1] = float("nan")
    raises("^weight has 1 NaN", fused, h, bad_w, y)
    bias = torch.zeros(17)
    bias[3] = float("nan")
    raises("^bias has 1 NaN or \\+inf", fused, h, w, y, bias=bias)
    t = h.clone()
    t[5] = float("inf")
    raises("^teacher_hidden has 6 NaN or infinite", fused, h, w, y, "kd", teacher_hidden=t, teacher_weight=w)
    raises("^teacher_logits has", plain, h, w, y, "kd", teacher_logits=torch.full((12, 17), float("nan")))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_finite_values_whose_sum_overflows_pass_and_mixed_infinities_are_counted(dtype):
    """The check sums each tensor once: a sum that overflows (finite entries near the dtype's
    maximum, or fp16 entries summing past 65504) is decided by the exact check, and +inf with
    -inf (a NaN sum) in a bias is one +inf, the -inf allowed."""
    from deft.fused.common import check_finite

    big = torch.full((8, 3), torch.finfo(dtype).max / 2, dtype=dtype)
    check_finite({"weight": big, "bias": big[0]}, allow_neg_inf=["bias"])
    check_finite({"hidden": torch.full((100,), 1000.0, dtype=dtype)})
    bias = torch.tensor([0.0, float("inf"), -float("inf"), -float("inf")], dtype=dtype)
    raises("^bias has 1 NaN or \\+inf value", check_finite, {"weight": big, "bias": bias}, allow_neg_inf=["bias"])
    raises("^weight has 2 NaN or infinite", check_finite, {"weight": bias[1:3]})
    check_finite({"bias": bias[2:]}, allow_neg_inf=["bias"])  # -inf only: allowed where named


@pytest.mark.parametrize("engine", [fused, plain])
def test_negative_token_weights_and_positive_old_logprobs(engine):
    h, w, y, old = case()
    weights = torch.ones(12)
    weights[4] = -0.5
    raises("^token_weights has negative values \\(min -0.5\\)", engine, h, w, y, token_weights=weights)
    raises("^old_logprobs must be log-probabilities \\(<= 0\\).*pass log p, not p", engine, h, w, y, "psft",
           old_logprobs=old.exp())
    assert torch.isfinite(engine(h, w, y, "psft", old_logprobs=old))


@pytest.mark.parametrize("engine", [fused, plain])
def test_label_types(engine):
    h, w, y, _ = case()
    raises("^labels must be a torch.Tensor, got list; convert it with torch.tensor", engine, h, w, y.tolist())
    raises("^labels must be an integer tensor of token ids, got torch.float32", engine, h, w, y.float())
    raises("^label 17 is outside the vocabulary", engine, h, w, torch.where(y == -100, 17, y))


def test_dtypes_devices_and_shapes():
    h, w, y, old = case()
    raises("^hidden \\(torch.bfloat16\\) and weight \\(torch.float32\\) must have one dtype", fused, h.bfloat16(), w, y)
    raises("^inputs are on different devices \\(.*labels on meta", fused, h, w, y.to("meta"))
    raises("^inputs are on different devices", plain, h, w, y, token_weights=torch.ones(12, device="meta"))
    raises("^hidden must be a torch.Tensor, got list", fused, h.tolist(), w, y)
    raises("^hidden \\[N, H\\] must align with labels", fused, h, w, y[:-1])
    raises("^hidden \\[N, H\\] and weight \\[V, H\\] must share H", fused, h, w[:, :-1], y)
    raises("^token_weights must have the labels' shape \\(12,\\)", fused, h, w, y, token_weights=torch.ones(11))
    raises("^old_logprobs must have the labels' shape", fused, h, w, y, "psft", old_logprobs=old[:-1])
    raises("^old_logprobs must have the labels' shape", plain, h, w, y, "psft", old_logprobs=old[:-1])
    raises("^teacher_hidden \\[N, H'\\] must align", fused, h, w, y, "kd", teacher_hidden=h[:-1], teacher_weight=w)
    raises("^teacher_logits must have the logits' shape", plain, h, w, y, "kd", teacher_logits=(h @ w.T)[:, :-1])
    raises("^chunk_size must be a positive integer", fused, h, w, y, chunk_size=0)


@pytest.mark.parametrize("engine", [fused, plain])
def test_every_label_ignored_normalises_safely(engine):
    """The documented normalisation ``total / max(stats["num_tokens"], 1)`` is 0, with zero
    finite gradients, when no label carries a loss."""
    h, w, _, _ = case()
    h.requires_grad_(True)
    y = torch.full((12,), -100)
    total, stats = engine(h, w, y, reduction="sum", return_stats=True)
    assert stats["num_tokens"] == 0
    (total / max(stats["num_tokens"], 1)).backward()
    assert total.item() == 0.0 and torch.all(h.grad == 0)


def test_one_sum_proves_a_tensor_finite_or_sends_it_to_the_exact_check():
    """The first stage of check_finite: a tensor's sum proves it finite (True) when the sum is finite,
    or -inf where -inf is allowed; a +inf or NaN sum (or -inf not allowed) sends it to the exact check.
    Half-precision tensors are summed in fp32 (60000 + 60000 overflows fp16, not fp32) and the others
    in their own dtype (1e300 + 1e300 overflows fp32, not fp64), so finite values rarely need the
    exact check."""
    from deft.fused.common import _sum_proves_finite, check_finite

    inf = float("inf")

    def proves(values, dtype=torch.float32, allowed=False):
        return bool(_sum_proves_finite(torch.tensor(values, dtype=dtype), allowed))

    assert proves([6e4, 6e4], torch.float16) and proves([6e4, 6e4], torch.float16, allowed=True)
    assert proves([1e300, 1e300], torch.float64)
    assert proves([1.0, 2.0], allowed=True) and proves([1.0, -inf], allowed=True)
    assert not proves([1.0, -inf]) and not proves([1.0, inf], allowed=True) and not proves([-inf, inf], allowed=True)
    assert not proves([1.0, float("nan")], allowed=True)
    # +inf alone in a tensor allowed -inf (a +inf sum) is still counted
    raises("^bias has 1 NaN or \\+inf value", check_finite, {"bias": torch.tensor([0.0, inf, 1.0])},
           allow_neg_inf=["bias"])
