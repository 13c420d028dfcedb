"""The fused chunked engine (deft.fused) where the value tests don't reach: the selected-token
normaliser, token weights and upstream scales on every path, chunk and sub-block borders, the
statistics of each objective kind, and the checks of the inputs.

Each test here was written to fail for a mutant that survived ``make mutate`` (docs/testing.md).
Expected values come from the definitions: hand computations in numpy float64
(:mod:`anchor_numpy`: the paper's formulas) on a 3-token, 5-word case whose LM head is the
identity, so that the logits are the hidden states and ``dL/dh`` is ``dL/dz`` itself.
"""

import numpy as np
import pytest
import torch

import deft
from anchor_numpy import OLD, T, Y, Z, log_softmax, loss_and_grad, numeric_grad, pick, softmax

EYE = np.eye(5)


def fused(spec, z=Z, y=Y, reduction="none", chunk_size=None, upstream=None, bias=None, ref=T, teacher=T,
          old=OLD, **kw):
    """Loss, ``dL/dz`` (identity head: the hidden states are the logits), ``dL/dW`` and the
    statistics of the fused engine on logits ``z [n, V]``; the reference's and the teacher's
    logits ``ref``, ``teacher`` ``[n, V]`` come through identity heads too."""
    eye = np.eye(z.shape[1])
    h = torch.tensor(z, requires_grad=True)
    w = torch.tensor(eye, requires_grad=True)
    b = None if bias is None else torch.tensor(bias, requires_grad=True)
    extra = dict(old_logprobs=None if old is None else torch.tensor(old))
    for need, logits in (("ref", ref), ("teacher", teacher)):
        if logits is not None:
            extra.update({f"{need}_hidden": torch.tensor(logits), f"{need}_weight": torch.tensor(eye)})
    extra.update(kw)
    loss, stats = deft.fused_token_loss(h, w, torch.tensor(y), spec, bias=b, reduction=reduction,
                                        chunk_size=chunk_size, return_stats=True, **extra)
    up = torch.ones_like(loss) if upstream is None else torch.as_tensor(upstream, dtype=loss.dtype)
    (loss * up).sum().backward()
    return (loss.detach().numpy(), h.grad.numpy(), w.grad.numpy(), None if b is None else b.grad.numpy(), stats)


# ------------------------------------------------------------------ gate path (deft.fused.gate)
@pytest.mark.parametrize("chunk_size", [1, 2, None])
def test_reference_top_logp_mask_divides_by_the_selected_tokens(chunk_size):
    """``OnlyTopLogP-0.1`` (the reference alias of ``nll[p>=0.1]``) averages ``-log p`` over the
    tokens with ``p >= 0.1`` only: two of the three here (p = 0.56, 0.22, 0.017)."""
    p = pick(softmax(Z))
    keep = p >= 0.1
    assert keep.tolist() == [True, True, False]
    loss, grad, _, _, stats = fused("OnlyTopLogP-0.1", reduction="mean", chunk_size=chunk_size)
    assert float(loss) == pytest.approx((-np.log(p) * keep).sum() / 2, rel=1e-6)
    want = keep[:, None] * (softmax(Z) - EYE[Y]) / 2
    np.testing.assert_allclose(grad, want, rtol=1e-6, atol=1e-7)
    assert stats["num_tokens"] == 2


# ------------------------------------------------- objectives registered for one test (helpers)
T2 = np.array([  # a teacher that differs from the reference T
    [0.0, 2.0, -1.0, 0.5, 0.0],
    [1.5, 0.0, 0.0, -2.0, 1.0],
    [-1.0, 0.0, 3.0, 0.5, 0.5],
])



def ce(q_logits, z):
    """``CE(softmax(q) ‖ softmax(z)) = -Σ_v Q_v log P_v`` per row."""
    return -(softmax(q_logits) * log_softmax(z)).sum(-1)


# --------------------------------------- frozen models (deft.fused.frozen): two of them at once
@pytest.mark.parametrize("chunk_size", [1, 3])
def test_distribution_objective_with_a_reference_and_a_teacher(registered, chunk_size):
    """A target needing both frozen models: ``L = -log p + ½ CE(R ‖ P) + ½ CE(T ‖ P)``, with
    ``g = 2P - δ_y - ½R - ½T`` (Appendix B form ``g = cP - Q``); the reference's and the
    teacher's distributions must each come from their own hidden states."""
    from deft.objectives import Target

    name = registered("test_ref_and_teacher", "distribution",
                      lambda d: Target(label=1.0, dists=((0.5, d.ref_logP), (0.5, d.teacher_logP))),
                      needs=("ref", "teacher"))
    loss, grad, _, _, _ = fused(name, chunk_size=chunk_size, teacher=T2)
    logP = log_softmax(Z)
    np.testing.assert_allclose(loss, -pick(logP) + 0.5 * ce(T, Z) + 0.5 * ce(T2, Z), rtol=1e-6)
    want = 2 * softmax(Z) - EYE[Y] - 0.5 * softmax(T) - 0.5 * softmax(T2)
    np.testing.assert_allclose(grad, want, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("chunk_size", [1, 3])
def test_autograd_objective_with_a_reference_and_a_teacher(registered, chunk_size):
    """The autograd path with both frozen models: ``L = -log p + KL(P ‖ R) + ½ KL(P ‖ T)``
    (reverse KLs, not of the ``cP - Q`` form), against numpy central differences."""
    from deft.objectives import Terms

    def fn(d):
        P = d.logP.exp()
        return Terms(-d.logp + (P * (d.logP - d.ref_logP)).sum(-1) + 0.5 * (P * (d.logP - d.teacher_logP)).sum(-1))

    name = registered("test_reverse_kl2", "autograd", fn, needs=("ref", "teacher"))

    def want(z):
        logP = log_softmax(z)
        P = np.exp(logP)
        return -pick(logP) + (P * (logP - log_softmax(T))).sum(-1) + 0.5 * (P * (logP - log_softmax(T2))).sum(-1)

    loss, grad, _, _, _ = fused(name, chunk_size=chunk_size, teacher=T2)
    np.testing.assert_allclose(loss, want(Z), rtol=1e-6)
    np.testing.assert_allclose(grad, numeric_grad(want, Z), rtol=1e-5, atol=1e-8)
    loss, grad = plain(name, ref_logits=torch.tensor(T), teacher_logits=torch.tensor(T2))
    np.testing.assert_allclose(loss, want(Z), rtol=1e-6)
    np.testing.assert_allclose(grad, numeric_grad(want, Z), rtol=1e-5, atol=1e-8)


def big_case(n=40, v=7, seed=0):
    """Logits, labels, reference and teacher logits and token weights for ``n`` tokens (numpy)."""
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, v)) * 2, rng.integers(0, v, n), rng.normal(size=(n, v)), rng.normal(size=(n, v)),
            rng.uniform(0.25, 2.0, n))


@pytest.mark.parametrize("chunk_size", [40, 35])
def test_row_sub_blocks_read_their_own_weights_and_frozen_rows(registered, chunk_size):
    """A 40-row chunk is processed in sub-blocks of 16, 16 and 8 rows (35: 16, 16, 3, then a
    5-row chunk); each sub-block reads the token weights and the frozen models' rows at its own
    positions, and its workspaces have its own number of rows (no resized buffers: no warning)."""
    import warnings

    from deft.objectives import Target

    name = registered("test_ref_and_teacher", "distribution",
                      lambda d: Target(label=1.0, dists=((0.5, d.ref_logP), (0.5, d.teacher_logP))),
                      needs=("ref", "teacher"))
    z, y, ref, teacher, weights = big_case()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss, grad, _, _, _ = fused(name, z=z, y=y, chunk_size=chunk_size, ref=ref, teacher=teacher, old=None,
                                    token_weights=torch.tensor(weights))
    eye = np.eye(7)
    want = -pick(log_softmax(z), y) + 0.5 * ce(ref, z) + 0.5 * ce(teacher, z)
    np.testing.assert_allclose(loss, weights * want, rtol=1e-6)
    g = 2 * softmax(z) - eye[y] - 0.5 * softmax(ref) - 0.5 * softmax(teacher)
    np.testing.assert_allclose(grad, weights[:, None] * g, rtol=1e-5, atol=1e-6)  # fp32 inside


def test_sub_block_rows_never_exceed_the_chunk():
    """A sub-block is at most the whole chunk, and 1/16 of it (at least 16 rows) otherwise."""
    from deft.fused import sub_block_rows

    assert [sub_block_rows(n) for n in (1, 2, 15, 16, 17, 255, 256, 257, 512)] == [1, 2, 15, 16, 16, 16, 16, 16, 32]


# ------------------------------------------------------- autograd objectives (deft.fused.autodiff)
def test_autograd_objective_token_weights_multiply_loss_and_gradient(registered):
    from deft.objectives import Terms

    name = registered("test_autograd_kl", "autograd",
                      lambda d: Terms(-d.logp + (d.logP.exp() * (d.logP - d.ref_logP)).sum(-1)), needs=("ref",))

    def want(z):
        logP = log_softmax(z)
        return -pick(logP) + (np.exp(logP) * (logP - log_softmax(T))).sum(-1)

    weights = np.array([2.0, 0.5, 0.0])
    loss, grad, _, _, stats = fused(name, token_weights=torch.tensor(weights))
    np.testing.assert_allclose(loss, weights * want(Z), rtol=1e-6)
    g = weights[:, None] * numeric_grad(want, Z)
    np.testing.assert_allclose(grad, g, rtol=1e-5, atol=1e-8)
    p = pick(softmax(Z))
    np.testing.assert_allclose(stats["gate"].numpy(), -pick(g) / (1 - p), rtol=1e-5, atol=1e-8)


def test_autograd_objective_reads_the_logsumexp_of_each_row(registered):
    """``Dists.lse`` is each row's ``log Σ_v e^{z_v}`` ``[n]`` (detached): a z-loss
    ``-log p + 0.01 lse²`` adds to the loss only."""
    from deft.objectives import Terms

    name = registered("test_z_loss", "autograd", lambda d: Terms(-d.logp + 0.01 * d.lse ** 2))
    lse = np.log(np.exp(Z).sum(-1))
    loss, grad, _, _, _ = fused(name)
    np.testing.assert_allclose(loss, -pick(log_softmax(Z)) + 0.01 * lse ** 2, rtol=1e-6)
    np.testing.assert_allclose(grad, softmax(Z) - EYE[Y], rtol=1e-6, atol=1e-7)


def test_autograd_objective_statistics_stay_finite_for_a_certain_token(registered):
    """A label whose probability rounds to 1 in fp32 (logit 40 above the others): ``g_y`` and
    ``1 - p`` are both 0, and the reported gate ``-g_y / (1 - p)`` must not become NaN."""
    from deft.objectives import Terms

    name = registered("test_autograd_nll", "autograd", lambda d: Terms(-d.logp))
    z = Z.copy()
    z[1, Y[1]] = 40.0
    loss, grad, _, _, stats = fused(name, z=z)
    assert stats["p"][1] == 1.0 and loss[1] == 0.0
    assert torch.isfinite(stats["gate"]).all()
    np.testing.assert_allclose(stats["gate"].numpy()[[0, 2]], 1.0, rtol=1e-5)  # -log p: the gate is 1


# ------------------------------------------------------------- the chunk loop (deft.fused.chunked)
@pytest.mark.parametrize("upstream", [0.5, 2.0, 0.0, 1.0])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_upstream_gradient_scales_the_stored_gradients(upstream, reduction):
    """``d(c L)/dz = c dL/dz`` for any scalar ``c`` (0 included) multiplying the summed or
    averaged loss: the gradients formed in the forward pass are scaled in backward."""
    want, g = loss_and_grad("deft", z=Z)
    div = 3.0 if reduction == "mean" else 1.0
    loss, grad, _, _, _ = fused("deft", reduction=reduction, upstream=upstream, chunk_size=2)
    assert float(loss) == pytest.approx(want.sum() / div, rel=1e-6)
    np.testing.assert_allclose(grad, upstream * g / div, rtol=1e-5, atol=1e-8)


def test_run_chunks_options_are_keyword_only():
    """``scale``, ``want`` and ``want_stats`` are options: a positional fifth argument is a mistake."""
    import inspect

    from deft.fused.chunked import run_chunks

    params = inspect.signature(run_chunks).parameters
    assert [p.kind for p in params.values()][4:] == [inspect.Parameter.KEYWORD_ONLY] * 3


# ------------------------------------- inputs, targets and checks shared by both engines (common)
def plain(spec, z=Z, y=Y, reduction="none", **kw):
    """Loss and ``dL/dz`` of the plain engine on logits ``z``."""
    zt = torch.tensor(z, requires_grad=True)
    loss = deft.token_loss(zt, torch.tensor(y), spec, reduction=reduction, **kw)
    loss.sum().backward()
    return loss.detach().numpy(), zt.grad.numpy()


def test_check_tensor_integer_option_is_keyword_only():
    import inspect

    from deft.fused.common import check_tensor

    params = list(inspect.signature(check_tensor).parameters.values())
    assert params[2].name == "integer" and params[2].kind == inspect.Parameter.KEYWORD_ONLY


def test_inputs_dict_carries_the_needs_and_a_frozen_models_bias():
    """``inputs=`` gives any need by argument name: the teacher's hidden states, head and bias
    (fused), old log-probabilities (both engines); the teacher's logits are ``T + b``."""
    tb = np.array([0.5, -1.0, 0.0, 2.0, 0.25])
    eye = torch.tensor(EYE)
    loss, grad, _, _, _ = fused("kd", teacher=None, ref=None, old=None,
                                inputs={"teacher_hidden": torch.tensor(T), "teacher_weight": eye,
                                        "teacher_bias": torch.tensor(tb)})
    np.testing.assert_allclose(loss, ce(T + tb, Z), rtol=1e-6)
    np.testing.assert_allclose(grad, softmax(Z) - softmax(T + tb), rtol=1e-6, atol=1e-7)
    r = np.exp(pick(log_softmax(Z)) - OLD)
    want = -np.minimum(r, np.clip(r, 0.8, 1.28))
    for engine in (fused, plain):
        kw = dict(ref=None, teacher=None, old=None) if engine is fused else {}
        np.testing.assert_allclose(engine("psft", inputs={"old_logprobs": torch.tensor(OLD)}, **kw)[0], want,
                                   rtol=1e-6)


@pytest.mark.parametrize("engine,key", [("fused", "old_logprobs_bias"), ("fused", "batch_bias"),
                                        ("plain", "teacher_bias"), ("plain", "ref_bias")])
def test_bias_inputs_exist_only_for_frozen_models_of_the_fused_engine(engine, key):
    z, w, y = torch.tensor(Z), torch.tensor(EYE), torch.tensor(Y)
    call = (lambda **kw: deft.fused_token_loss(z, w, y, "nll", **kw)) if engine == "fused" else \
        (lambda **kw: deft.token_loss(z, y, "nll", **kw))
    with pytest.raises(ValueError, match=f"unknown input '{key}'"):
        call(inputs={key: torch.zeros(5)})


def test_masked_vocabulary_entry_in_the_model_and_the_teacher():
    """Word 1 masked (logit -inf) in the model and in the teacher: ``0 log 0 = 0``, so the KD loss
    and gradient are those of the 4-word vocabulary without it, in both engines."""
    mask = np.array([0.0, -np.inf, 0.0, 0.0, 0.0])
    keep = [0, 2, 3, 4]
    want = ce(T[:, keep], Z[:, keep])
    g = np.zeros((3, 5))
    g[:, keep] = softmax(Z[:, keep]) - softmax(T[:, keep])
    loss, grad, _, _, _ = fused("kd", bias=mask, teacher=None, ref=None, old=None,
                                inputs={"teacher_hidden": torch.tensor(T), "teacher_weight": torch.tensor(EYE),
                                        "teacher_bias": torch.tensor(mask)})
    np.testing.assert_allclose(loss, want, rtol=1e-6)
    np.testing.assert_allclose(grad, g, rtol=1e-6, atol=1e-7)
    loss, grad = plain("kd", z=Z + mask, teacher_logits=torch.tensor(T + mask))
    np.testing.assert_allclose(loss, want, rtol=1e-6)
    np.testing.assert_allclose(grad, g, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("label,uniform", [(1.1, -0.1), (0.0, 1.0), (0.0, -1.0)])
def test_uniform_target_weight_of_any_sign(registered, label, uniform):
    """``uniform`` weighs ``CE(U ‖ P) = -mean_v log P_v``; a negative weight (negative label
    smoothing) or a weight of 1 is a term like any other: ``g = (label + uniform) P - label δ_y - uniform / V``."""
    from deft.objectives import Target

    name = registered("test_uniform", "distribution", lambda d: Target(label=label, uniform=uniform))
    logP = log_softmax(Z)
    want = -label * pick(logP) - uniform * logP.mean(-1)
    g = (label + uniform) * softmax(Z) - label * EYE[Y] - uniform / 5
    for loss, grad in (fused(name)[:2], plain(name)):
        np.testing.assert_allclose(loss, want, rtol=1e-6)
        np.testing.assert_allclose(grad, g, rtol=1e-6, atol=1e-7)  # fp32 inside


def test_positive_infinity_in_a_bias_is_counted():
    bias = torch.tensor([0.0, float("inf"), -float("inf"), 0.0, 0.0])
    with pytest.raises(ValueError, match="^bias has 1 NaN or \\+inf value"):
        deft.fused_token_loss(torch.tensor(Z), torch.tensor(EYE), torch.tensor(Y), "nll", bias=bias)


@pytest.mark.parametrize("engine", ["fused", "plain"])
def test_input_checks_name_the_problem(engine):
    z, w = torch.tensor(Z), torch.tensor(EYE)

    def call(y, **kw):
        if engine == "fused":
            return deft.fused_token_loss(z[: len(y)], w, y, kw.pop("spec", "nll"), **kw)
        return deft.token_loss(z[: len(y)], y, kw.pop("spec", "nll"), **kw)

    # the first label outside [0, 5) is named, whatever the valid labels before it
    for labels, bad in (([0, 3, 7], 7), ([0, 7, 9], 7), ([2, 6, 0], 6), ([0, -1, 3], -1), ([4, 0, 5], 5)):
        with pytest.raises(ValueError, match=f"^label {bad} is outside the vocabulary"):
            call(torch.tensor(labels))
    with pytest.raises(ValueError, match="must be an integer tensor of token ids, got torch.bool"):
        call(torch.tensor([True, False, True]))
    with pytest.raises(ValueError, match="token_weights must have the labels' shape \\(3,\\), got \\(4,\\)"):
        call(torch.tensor(Y), token_weights=torch.ones(4, dtype=torch.float64))
    # log-probabilities may exceed 0 by rounding up to 1e-5, not more
    old = torch.tensor([-0.5, 1e-5, -3.0], dtype=torch.float32)
    assert np.isfinite(call(torch.tensor(Y), spec="psft", old_logprobs=old).item())
    with pytest.raises(ValueError, match="old_logprobs must be log-probabilities"):
        call(torch.tensor(Y), spec="psft", old_logprobs=torch.tensor([-0.5, 2e-5, -3.0]))


# ------------------------------------------------------------ the plan (deft.fused.prepare)
MIB = 1 << 20


@pytest.mark.parametrize("tokens,hidden,vocab,rows", [
    # budget = half the fp32 head (V H 4 / 2) within [32, 512] MiB; rows = budget / (4 V),
    # rounded down to a multiple of 16 from 32 rows up, within [16, 8192] and at most the tokens
    (10**6, 4096, 1 << 15, 2048),  # head 512 MiB: budget 256 MiB = 2^28 B, rows 2^28 / 2^17
    (10**6, 64, 10000, 832),  # head 2.4 MiB: budget 32 MiB, 33554432 // 40000 = 838 -> 832
    (10**6, 64, 1000, 8192),  # budget 32 MiB: 8388 rows -> 8384, capped at 8192
    (10**6, 1 << 14, 1 << 15, 4096),  # head 2 GiB: budget 512 MiB, 2^29 / 2^17
    (10**6, 1 << 14, 50000, 2672),  # budget 512 MiB: 536870912 // 200000 = 2684 -> 2672
    (10**6, 16, 1 << 24, 16),  # budget 512 MiB: 8 rows, raised to 16
    (10**6, 64, 4329604, 31),  # budget 512 MiB: 31 rows (under 32: not rounded)
    (10**6, 128, 4067203, 32),  # budget 512 MiB: 33 rows -> 32
    (1, 64, 1000, 1),  # never more rows than tokens
    (0, 64, 1000, 1),  # and at least one
    (20, 64, 1000, 20),
])
def test_auto_chunk_size_from_its_rule(tokens, hidden, vocab, rows):
    from deft.fused import auto_chunk_size

    assert auto_chunk_size(tokens, hidden, vocab) == rows


@pytest.mark.parametrize("chunk_size", [None, 7, 40])
def test_cayley_floor_batch_mean_covers_every_loss_token(chunk_size):
    """``cayley_floor``'s floor ``f = ½ mean_i sg(p_i)`` runs over all 40 loss tokens (more tokens
    than the hidden size 7), whatever the chunking; ``a = clip(f + (1 - f) p / (2 - p), 1e-3, 1)``,
    ``L = (1 - p^a) / a`` and ``dL/dz = p^a (P - δ_y)`` (paper Eq. 10-12)."""
    z, y, _, _, _ = big_case()
    p = pick(softmax(z), y)
    f = 0.5 * p.mean()
    a = np.clip(f + (1 - f) * p / (2 - p), 1e-3, 1.0)
    loss, grad, _, _, _ = fused("cayley_floor", z=z, y=y, chunk_size=chunk_size, ref=None, teacher=None, old=None)
    np.testing.assert_allclose(loss, (1 - p ** a) / a, rtol=1e-5)
    np.testing.assert_allclose(grad, (p ** a)[:, None] * (softmax(z) - np.eye(7)[y]), rtol=1e-5, atol=1e-7)


def test_cayley_floor_of_a_single_loss_token():
    """One loss token (two labels ignored): the batch floor is ``f = ½ p`` of that token."""
    y = np.array([-100, Y[1], -100])
    p = softmax(Z)[1, Y[1]]
    f = 0.5 * p
    a = np.clip(f + (1 - f) * p / (2 - p), 1e-3, 1.0)
    loss, grad, _, _, _ = fused("cayley_floor", y=y, ref=None, teacher=None, old=None)
    np.testing.assert_allclose(loss, [0.0, (1 - p ** a) / a, 0.0], rtol=1e-6)
    np.testing.assert_allclose(grad[1], p ** a * (softmax(Z)[1] - EYE[Y[1]]), rtol=1e-6, atol=1e-7)


def test_a_single_position_with_a_scalar_label():
    """``hidden [..., H]`` with ``...`` empty: one position and a 0-d label; ignored, it gives a
    0-d zero loss. A 0-d ``hidden`` has no hidden size and is refused."""
    h, w = torch.tensor(Z[0]), torch.tensor(EYE)
    loss = deft.fused_token_loss(h, w, torch.tensor(-100), "nll", reduction="none")
    assert loss.shape == () and float(loss) == 0.0
    with pytest.raises(ValueError, match="hidden \\[N, H\\] and weight \\[V, H\\] must share H"):
        deft.fused_token_loss(torch.tensor(1.0, dtype=torch.float64), w, torch.tensor(Y[0]), "nll")


def test_a_single_token_with_a_scalar_label():
    """A 0-d label with a [H] hidden state is one token: the loss is 0-d, as with the plain engine."""
    h, w = torch.tensor(Z[0]), torch.tensor(EYE)
    loss = deft.fused_token_loss(h, w, torch.tensor(Y[0]), "nll", reduction="none")
    assert loss.shape == () and float(loss) == pytest.approx(-log_softmax(Z)[0, Y[0]], rel=1e-6)
    # d(-log p_y)/dz = softmax(z) - onehot(y), and with W = I the logits are the hidden state
    h.requires_grad_(True)
    deft.fused_token_loss(h, w, torch.tensor(Y[0]), "nll").backward()
    assert np.allclose(h.grad.numpy(), softmax(Z)[0] - EYE[Y[0]], atol=1e-12)


def test_prepare_options_are_keyword_only():
    import inspect

    from deft.fused.prepare import prepare

    kinds = [p.kind for p in inspect.signature(prepare).parameters.values()]
    assert kinds[:4] == [inspect.Parameter.POSITIONAL_OR_KEYWORD] * 4
    assert set(kinds[4:]) == {inspect.Parameter.KEYWORD_ONLY}


def test_shape_checks_of_the_model_and_a_frozen_model():
    """Every mismatch, in either direction, is a one-line ValueError naming the argument and the
    shapes (hidden size H = 4, vocabulary V = 5, teacher hidden size H' = 6)."""
    g = torch.Generator().manual_seed(0)
    h, w, y = torch.randn(3, 4, generator=g), torch.randn(5, 4, generator=g), torch.tensor([0, 3, 2])
    th, tw = torch.randn(3, 6, generator=g), torch.randn(5, 6, generator=g)

    def refused(match, hidden=h, weight=w, labels=y, objective="nll", **kw):
        with pytest.raises(ValueError, match=match) as info:
            deft.fused_token_loss(hidden, weight, labels, objective, **kw)
        assert "\n" not in str(info.value)

    share = "^hidden \\[N, H\\] and weight \\[V, H\\] must share H"
    refused(share, weight=w[:, 0])  # 1-D weight
    refused(share, weight=w[:, :, None])  # 3-D weight
    refused(share, weight=torch.randn(5, 5, generator=g))  # weight wider than hidden
    refused("^hidden \\[N, H\\] must align with labels \\[N\\]: got \\(2, 4\\) and \\(3,\\)", hidden=h[:2])
    refused("^bias must have shape \\(5,\\), got \\(6,\\)", bias=torch.zeros(6))
    refused("^bias must have shape \\(5,\\), got \\(3,\\)", bias=torch.zeros(3))
    aligned = "^teacher_hidden \\[N, H'\\] must align with labels and teacher_weight \\[V, H'\\]"
    refused(aligned, objective="kd", teacher_hidden=torch.randn(4, 6, generator=g), teacher_weight=tw)  # longer
    refused(aligned, objective="kd", teacher_hidden=th, teacher_weight=tw[:, 0])
    refused(aligned, objective="kd", teacher_hidden=th, teacher_weight=tw[:, :, None])
    refused(aligned, objective="kd", teacher_hidden=th, teacher_weight=tw[:, :5])  # narrower head
    refused(aligned, objective="kd", teacher_hidden=th[:, :5], teacher_weight=tw)  # narrower hidden
    refused("^the teacher model's vocabulary \\(6\\) differs from the model's \\(5\\)", objective="kd",
            teacher_hidden=th, teacher_weight=torch.randn(6, 6, generator=g))
    refused("^the teacher model's vocabulary \\(4\\) differs from the model's \\(5\\)", objective="kd",
            teacher_hidden=th, teacher_weight=torch.randn(4, 6, generator=g))
    refused("^teacher_hidden must be a torch.Tensor, got list", objective="kd", teacher_hidden=th.tolist(),
            teacher_weight=tw, check_inputs=False)
    refused("^teacher_weight must be a floating-point tensor, got torch.int64", objective="kd", teacher_hidden=th,
            teacher_weight=tw.long(), check_inputs=False)


def test_ignore_index_marks_only_its_own_value():
    """Labels equal to ``ignore_index`` are dropped; any other label, smaller ones included, is a
    loss token and must index the vocabulary."""
    loss = fused("nll", y=np.array([0, 3, 4]), ignore_index=4, ref=None, teacher=None, old=None)[0]
    np.testing.assert_allclose(loss, [-log_softmax(Z)[0, 0], -log_softmax(Z)[1, 3], 0.0], rtol=1e-6)
    with pytest.raises(ValueError, match="^label -101 is outside the vocabulary"):
        deft.fused_token_loss(torch.tensor(Z), torch.tensor(EYE), torch.tensor([0, -101, -100]), "nll")


@pytest.mark.parametrize("tokens,rows", [(100, 100), (3000, 2048)])
def test_plan_chunk_size_comes_from_the_loss_tokens_and_the_head(tokens, rows):
    """Without ``chunk_size``, the plan uses ``auto_chunk_size(M loss tokens, H, V)``: for H = 4096,
    V = 32768 the head is 512 MiB, so 2048 rows (fewer when there are fewer loss tokens). The
    head and the hidden states are zero-stride views: no memory."""
    from deft.fused.prepare import prepare
    from deft.objectives import parse_objective

    hidden, vocab = 4096, 1 << 15
    h = torch.zeros(1, 1).expand(tokens + 5, hidden)
    w = torch.zeros(1, 1).expand(vocab, hidden)
    labels = torch.zeros(tokens + 5, dtype=torch.long)
    labels[:5] = -100  # five ignored positions: M = tokens
    call = prepare(parse_objective("nll"), h, w, labels, bias=None, ignore_index=-100, reduction="sum",
                   chunk_size=None, named={}, inputs=None, token_weights=None, want_stats=False, check_inputs=False)
    assert call.hidden.shape == (tokens, hidden) and call.plan.chunk_size == rows


# ------------------------------------------------------------------- the plain engine (plain)
def test_token_loss_options_are_keyword_only():
    import inspect

    kinds = [p.kind for p in inspect.signature(deft.token_loss).parameters.values()]
    assert kinds[:3] == [inspect.Parameter.POSITIONAL_OR_KEYWORD] * 3
    assert set(kinds[3:]) == {inspect.Parameter.KEYWORD_ONLY}


def test_plain_engine_shapes_and_labels():
    """``logits [..., V]`` with ``...`` empty is one token with a 0-d label; a 0-d ``logits``,
    logits that do not align with the labels and a teacher of another shape are refused; labels
    other than ``ignore_index`` are loss tokens and must index the vocabulary."""
    z = torch.tensor(Z)
    loss = deft.token_loss(z[1], torch.tensor(Y[1]), "nll", reduction="none")
    assert loss.shape == () and float(loss) == pytest.approx(-log_softmax(Z)[1, Y[1]], rel=1e-6)
    for logits, labels in ((torch.tensor(1.0), torch.tensor(0)), (z[:2], torch.tensor(Y))):
        with pytest.raises(ValueError, match="^logits \\[\\.\\.\\., V\\] must align with labels"):
            deft.token_loss(logits, labels, "nll")
    with pytest.raises(ValueError, match="^teacher_logits must have the logits' shape \\(3, 5\\).*got \\(3, 6\\)"):
        deft.token_loss(z, torch.tensor(Y), "kd", teacher_logits=torch.zeros(3, 6, dtype=torch.float64))
    np.testing.assert_allclose(plain("nll", y=np.array([0, 3, 4]), ignore_index=4)[0],
                               [-log_softmax(Z)[0, 0], -log_softmax(Z)[1, 3], 0.0], rtol=1e-6)
    with pytest.raises(ValueError, match="^label -101 is outside the vocabulary"):
        deft.token_loss(z, torch.tensor([0, -101, -100]), "nll")


def test_gate_objectives_never_see_a_frozen_models_distribution(registered):
    """A gate objective sees ``log p`` only, in both engines (design brief): reading a frozen
    model's distribution is a clear error, even when its logits are given."""
    from deft.objectives.base import PerTokenLoss

    name = registered("test_gate_reads_ref", "gate", lambda t: PerTokenLoss(-t.logp + 0 * t.ref_logP.sum(-1)),
                      needs=("ref",))
    with pytest.raises(ValueError, match="a gate objective sees only log p, not 'ref_logP'"):
        deft.token_loss(torch.tensor(Z), torch.tensor(Y), name, ref_logits=torch.tensor(T))


# ------------------------------------------- distribution targets (deft.fused.target): in-place exp
def test_a_target_used_twice_or_kept_by_the_objective_is_not_overwritten(registered):
    """The engine may exponentiate a frozen model's log-distribution in place only when it owns
    it and it is used once: the teacher's given twice (``½ CE(T ‖ P) + ½ CE(T ‖ P)`` is KD), and a
    fixed prior the objective keeps between calls (``CE(prior ‖ P)``, the same on every call)."""
    from deft.objectives import Target

    twice = registered("test_teacher_twice", "distribution",
                       lambda d: Target(dists=((0.5, d.teacher_logP), (0.5, d.teacher_logP))), needs=("teacher",))
    loss, grad, _, _, _ = fused(twice)
    np.testing.assert_allclose(loss, ce(T, Z), rtol=1e-6)
    np.testing.assert_allclose(grad, softmax(Z) - softmax(T), rtol=1e-6, atol=1e-7)
    prior = torch.log_softmax(torch.tensor(T2, dtype=torch.float32), -1)
    kept = registered("test_fixed_prior", "distribution", lambda d: Target(dists=((1.0, prior),)))
    for _ in range(2):
        loss, grad, _, _, _ = fused(kept, ref=None, teacher=None, old=None)
        np.testing.assert_allclose(loss, ce(T2, Z), rtol=1e-6)
        np.testing.assert_allclose(grad, softmax(Z) - softmax(T2), rtol=1e-6, atol=1e-7)
