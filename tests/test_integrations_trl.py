"""DeftSFTTrainer: deft objectives inside real TRL SFTTrainer runs on tiny random models.

Every loss is checked against ``deft.token_loss`` on logits computed independently with the
model class's own (unpatched) forward on the same collated batch.
"""

import copy

import pytest
import torch

pytest.importorskip("trl")

from datasets import Dataset  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

from deft import token_loss  # noqa: E402
from deft.integrations.trl import DeftSFTConfig, DeftSFTTrainer  # noqa: E402
from deft.model.fused_forward import patch_fused_loss  # noqa: E402
from tiny_models import tiny_model  # noqa: E402


def byte_tokenizer():
    """A byte-level tokenizer (256 bytes + 3 specials) with a chat template whose assistant
    turns are marked for TRL's ``assistant_only_loss``; built in memory, no download."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {c: i for i, c in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    for special in ("<pad>", "<s>", "</s>"):
        vocab[special] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    out = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>")
    out.chat_template = (
        "{% for m in messages %}{% if m['role'] == 'assistant' %}<s>A:{% generation %}{{ m['content'] }}</s>"
        "{% endgeneration %}{% else %}<s>U:{{ m['content'] }}</s>{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}<s>A:{% endif %}")
    return out


TOK = byte_tokenizer()
V = len(TOK)  # 259: no other dimension of the tiny model has this size


def model_for(tok=TOK, seed=0):
    return tiny_model("llama", seed=seed, vocab_size=len(tok), pad_token_id=tok.pad_token_id,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)


def prompt_completion(n=8):
    return Dataset.from_list([{"prompt": f"what is {i} + {i * 3}?", "completion": f" {i * 4}" + "!" * (i % 3)}
                              for i in range(n)])


def base_args(tmp_path, **kw) -> dict:
    return dict(dict(output_dir=str(tmp_path / "out"), max_steps=1, per_device_train_batch_size=4, logging_steps=1,
                     report_to=[], gradient_checkpointing=False, bf16=False, use_cpu=True, save_strategy="no",
                     learning_rate=1e-2, disable_tqdm=True, max_length=64, lr_scheduler_type="constant", seed=0), **kw)


def config(tmp_path, **kw):
    return DeftSFTConfig(**base_args(tmp_path, **kw))


class Recording(DeftSFTTrainer):
    """Keeps the first training micro-batch, the loss returned for it and ``num_items_in_batch``."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        if model.training and not hasattr(self, "first"):
            self.first = ({k: v.clone() if torch.is_tensor(v) else v for k, v in inputs.items()},
                          float(loss.detach()), num_items_in_batch)
        return loss


def class_logits(model, inputs):
    """Logits from the model class's own forward (no patch), without labels. ``use_cache=False``
    as in training: with a cache HF cannot detect packed rows and attends across examples."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    with torch.no_grad():
        kw = {k: v for k, v in inputs.items() if k != "labels"}
        return type(base).forward(base, **kw, use_cache=False).logits


def test_first_step_loss_equals_token_loss_unpacked(tmp_path):
    trainer = Recording(model=model_for(), args=config(tmp_path), train_dataset=prompt_completion(),
                        processing_class=TOK)
    trainer.train()
    inputs, loss, num_items = trainer.first
    assert "attention_mask" in inputs and "position_ids" not in inputs
    labels = inputs["labels"]
    # completion-only labels: the prompt part of every row is ignored
    assert (labels[:, :5] == -100).all() and (labels != -100).any()
    assert int(num_items) == int((labels[:, 1:] != -100).sum())
    # compare with the trained model's parameters restored to step 0: rerun from the same seed
    fresh = model_for()
    expected = token_loss(class_logits(fresh, inputs)[:, :-1], labels[:, 1:], "deft", reduction="mean")
    assert loss == pytest.approx(float(expected), rel=1e-5)
    log = trainer.state.log_history[0]
    assert log["loss"] == pytest.approx(loss, rel=1e-6)
    # deft's token statistics in TRL's metrics, token-weighted over the step's loss tokens
    logits = class_logits(fresh, inputs)[:, :-1]
    mask = labels[:, 1:] != -100
    probs = logits.float().softmax(-1)[mask]
    p = probs.gather(-1, labels[:, 1:][mask][:, None]).squeeze(-1)
    focus = probs.pow(2).sum(-1)
    entropy = -(probs * probs.log()).sum(-1)
    assert log["mean_p"] == pytest.approx(float(p.mean()), rel=1e-4)
    assert log["mean_focus"] == pytest.approx(float(focus.mean()), rel=1e-4)
    assert log["mean_gate"] == pytest.approx(float(p.pow(focus).mean()), rel=1e-4)
    assert log["entropy"] == pytest.approx(float(entropy.mean()), rel=1e-4)
    assert "mean_token_accuracy" not in log  # TRL's logits-based metric is not faked
    assert log["num_tokens"] == int(inputs["attention_mask"].sum())


def test_first_step_loss_equals_token_loss_packed(tmp_path):
    """Packed (padding-free) rows: the loss equals the one of each example run on its own, so
    examples in a row do not attend to each other and the boundaries carry no loss."""
    data = prompt_completion()
    trainer = Recording(model=model_for(), args=config(tmp_path, packing=True), train_dataset=data,
                        processing_class=TOK)
    trainer.train()
    inputs, loss, num_items = trainer.first
    assert "position_ids" in inputs and "attention_mask" not in inputs and inputs["input_ids"].shape[0] == 1
    fresh = model_for()
    logits = class_logits(fresh, inputs)
    expected = token_loss(logits[:, :-1], inputs["labels"][:, 1:], "deft", reduction="mean")
    assert loss == pytest.approx(float(expected), rel=1e-5)
    # independently: each packed segment alone, summed, over the same token count
    starts = (inputs["position_ids"][0] == 0).nonzero().flatten().tolist() + [inputs["input_ids"].shape[1]]
    total, count = 0.0, 0
    for a, b in zip(starts[:-1], starts[1:]):
        ids, lab = inputs["input_ids"][:, a:b], inputs["labels"][:, a:b]
        with torch.no_grad():
            seg = fresh(input_ids=ids, use_cache=False).logits
        total += float(token_loss(seg[:, :-1], lab[:, 1:], "deft", reduction="sum"))
        count += int((lab[:, 1:] != -100).sum())
    assert len(starts) > 2 and count == int(num_items)
    assert loss == pytest.approx(total / count, rel=1e-5)


def test_first_step_loss_with_lora(tmp_path):
    from peft import LoraConfig

    # init_lora_weights=False: a random (non-zero) adapter, so the adapter's delta is in the loss
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0,
                      init_lora_weights=False, task_type="CAUSAL_LM")
    for packing in (False, True):
        torch.manual_seed(1)
        trainer = Recording(model=model_for(), args=config(tmp_path, packing=packing), peft_config=lora,
                            train_dataset=prompt_completion(), processing_class=TOK)
        start = copy.deepcopy(trainer.model)
        before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
        trainer.train()
        inputs, loss, _ = trainer.first
        logits = class_logits(start, inputs)
        expected = token_loss(logits[:, :-1], inputs["labels"][:, 1:], "deft", reduction="mean")
        assert loss == pytest.approx(float(expected), rel=1e-5)
        base_logits = class_logits(model_for(), inputs)  # without the adapter the loss differs
        assert float(token_loss(base_logits[:, :-1], inputs["labels"][:, 1:], "deft")) != pytest.approx(loss,
                                                                                                       rel=1e-4)
        changed = {n for n, p in trainer.model.named_parameters() if not torch.equal(p.detach(), before[n])}
        assert changed and all("lora_" in n for n in changed)


class _Watch(TorchDispatchMode):
    """Records the largest number of rows of any tensor an op allocates (views excluded, e.g.
    the LM-head weight's transpose ``[H, V]``) with last dimension V."""

    def __init__(self, vocab):
        super().__init__()
        self.vocab, self.rows = vocab, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func.is_view:
            return out
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if torch.is_tensor(t) and t.dim() >= 2 and t.shape[-1] == self.vocab:
                self.rows = max(self.rows, t.numel() // self.vocab)
        return out


def test_no_tokens_by_vocab_tensor_in_the_training_step(tmp_path):
    chunk = 4
    trainer = Recording(model=model_for(), args=config(tmp_path, objective_chunk_size=chunk),
                        train_dataset=prompt_completion(), processing_class=TOK)
    head_calls = []
    trainer.model.get_output_embeddings().register_forward_hook(lambda *a: head_calls.append(1))
    watch = _Watch(V)
    with watch:
        trainer.train()
    inputs, _, num_items = trainer.first
    assert int(num_items) > 3 * chunk
    assert head_calls == []  # the LM head module never ran: the fused path took the weight
    assert 0 < watch.rows <= chunk  # only [chunk, V] buffers, never [tokens, V]
    # the watcher does see logits when they are formed
    plain = patch_fused_loss(model_for(), "deft", fused=False)
    watch = _Watch(V)
    with watch:
        plain(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], labels=inputs["labels"])
    assert watch.rows >= inputs["input_ids"].numel() - inputs["input_ids"].shape[0]


def test_gradient_accumulation_uses_the_step_token_count(tmp_path):
    """2 micro-batches of 2 rows with different loss-token counts give the same SGD update as one
    batch of 4 rows (normalised over the whole step, not per micro-batch)."""
    data = prompt_completion(4)
    params = []
    for bs, ga in ((4, 1), (2, 2)):
        trainer = DeftSFTTrainer(model=model_for(), train_dataset=data, processing_class=TOK,
                                 args=config(tmp_path, per_device_train_batch_size=bs, gradient_accumulation_steps=ga,
                                             optim="sgd", learning_rate=1.0, max_grad_norm=0.0))
        trainer.train()
        params.append(torch.cat([p.detach().flatten() for p in trainer.model.parameters()]))
    start = torch.cat([p.detach().flatten() for p in model_for().parameters()])
    assert not torch.allclose(params[0], start)
    torch.testing.assert_close(params[1], params[0], rtol=1e-4, atol=1e-6)


def test_assistant_only_loss_and_kd_teacher(tmp_path):
    """Conversational data with assistant-only labels, objective 'kd' with a teacher model."""
    replies = ["four", "nine!", "a longer reply"]
    data = Dataset.from_list([{"messages": [{"role": "user", "content": f"q{i}"},
                                            {"role": "assistant", "content": r}]} for i, r in enumerate(replies)])
    teacher = model_for(seed=7)
    trainer = Recording(model=model_for(), args=config(tmp_path, objective="kd", assistant_only_loss=True,
                                                       per_device_train_batch_size=3),
                        train_dataset=data, processing_class=TOK, teacher_model=teacher)
    trainer.train()
    inputs, loss, num_items = trainer.first
    # the assistant turn's bytes plus its closing </s>, nothing of the user turn
    assert int(num_items) == sum(len(r.encode()) + 1 for r in replies)
    labels = inputs["labels"][:, 1:]
    expected = token_loss(class_logits(model_for(), inputs)[:, :-1], labels, "kd", reduction="mean",
                          teacher_logits=class_logits(teacher, inputs)[:, :-1])
    assert loss == pytest.approx(float(expected), rel=1e-5)


def test_a_registered_model_need_reaches_the_trainer_through_models(tmp_path):
    """DeftSFTTrainer iterates NEEDS: a new need with a frozen model (here a 'critic' used as a
    teacher) is supplied with models={patch_arg: model} and gives kd's loss with that teacher."""
    from deft.objectives import NEEDS, REGISTRY, CrossEntropyTargets, Need, register, register_need

    register_need(Need("critic", "a critic model's distribution", "model", "critic_logP", patch_arg="critic"))
    register("test_critic_kd", "distribution", "test only: KD to the critic", needs=("critic",))(
        lambda d: CrossEntropyTargets(dists=((1.0, d.critic_logP),)))
    try:
        critic = model_for(seed=7)
        with pytest.raises(ValueError, match="needs a critic model's distribution"):
            DeftSFTTrainer(model=model_for(), args=config(tmp_path, objective="test_critic_kd"),
                           train_dataset=prompt_completion(), processing_class=TOK)
        losses = {}
        for objective, kw in (("test_critic_kd", {"models": {"critic": critic}}), ("kd", {"teacher_model": critic})):
            trainer = Recording(model=model_for(), args=config(tmp_path, objective=objective),
                                train_dataset=prompt_completion(), processing_class=TOK, **kw)
            trainer.train()
            losses[objective] = trainer.first[1]
        assert losses["test_critic_kd"] == pytest.approx(losses["kd"], rel=1e-6)
    finally:
        REGISTRY.pop("test_critic_kd", None)
        NEEDS.pop("critic", None)


def test_config_errors_are_clear(tmp_path):
    with pytest.raises(ValueError, match="unknown objective 'deftt'"):
        config(tmp_path, objective="deftt")
    with pytest.raises(ValueError, match="objective='dft'"):
        config(tmp_path, loss_type="dft")
    with pytest.raises(ValueError, match="label_smoothing:lam=0.1"):
        config(tmp_path, label_smoothing_factor=0.1)
    with pytest.raises(ValueError, match="needs a teacher"):
        DeftSFTTrainer(model=model_for(), args=config(tmp_path, objective="kd"), train_dataset=prompt_completion(),
                       processing_class=TOK)


def test_sft_kl_with_lora_uses_the_disabled_adapter_as_reference_and_evaluates(tmp_path):
    """sft_kl under LoRA: the reference is the same model with its adapter off; evaluate() reports
    the objective per eval batch with the token statistics under eval_ names."""
    from peft import LoraConfig

    torch.manual_seed(2)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0,
                      init_lora_weights=False, task_type="CAUSAL_LM")
    data = prompt_completion(4)
    trainer = Recording(model=model_for(), args=config(tmp_path, objective="sft_kl:lam=0.5",
                                                       per_device_eval_batch_size=4),
                        peft_config=lora, train_dataset=data, eval_dataset=data, processing_class=TOK)
    start = copy.deepcopy(trainer.model)
    trainer.train()
    inputs, loss, _ = trainer.first
    labels = inputs["labels"][:, 1:]
    logits = class_logits(start, inputs)[:, :-1]
    ref = class_logits(model_for(), inputs)[:, :-1]  # the base model = the adapter disabled
    expected = token_loss(logits, labels, "sft_kl:lam=0.5", reduction="mean", ref_logits=ref)
    assert loss == pytest.approx(float(expected), rel=1e-5)
    assert loss - float(token_loss(logits, labels, "nll")) > 1e-3  # the KL term (>= 0) counts

    metrics = trainer.evaluate()
    batch = trainer.data_collator([trainer.eval_dataset[i] for i in range(4)])
    after = class_logits(trainer.model, batch)[:, :-1]
    want = token_loss(after, batch["labels"][:, 1:], "sft_kl:lam=0.5", reduction="mean",
                      ref_logits=class_logits(model_for(), batch)[:, :-1])
    assert metrics["eval_loss"] == pytest.approx(float(want), rel=1e-5)
    assert 0 < metrics["eval_mean_p"] < 1 and "eval_entropy" in metrics


def test_psft_old_policy_is_refreshed(tmp_path):
    """psft's ratio r = p / p_old is 1 while the old policy equals the model, so the loss is -1;
    refreshed every step it stays -1, refreshed every 2 steps the second step's r moves away."""
    losses = {}
    for every in (1, 2):
        trainer = DeftSFTTrainer(model=model_for(), train_dataset=prompt_completion(4), processing_class=TOK,
                                 args=config(tmp_path, objective="psft", old_policy_refresh=every, max_steps=2,
                                             learning_rate=0.05))
        trainer.train()
        losses[every] = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert losses[1] == pytest.approx([-1.0, -1.0], abs=1e-6)
    assert losses[2][0] == pytest.approx(-1.0, abs=1e-6) and abs(losses[2][1] + 1.0) > 1e-4


def test_moe_router_loss_matches_trl(tmp_path):
    """A mixture-of-experts model: objective 'nll' through deft gives TRL's own first-step loss
    (mean NLL + router_aux_loss_coef * load-balancing loss) and logs the aux loss."""
    from trl import SFTConfig, SFTTrainer

    kw = dict(vocab_size=V, pad_token_id=TOK.pad_token_id, bos_token_id=TOK.bos_token_id,
              eos_token_id=TOK.eos_token_id, router_aux_loss_coef=0.5)
    losses = []
    for trainer_cls, args in ((DeftSFTTrainer, DeftSFTConfig(**base_args(tmp_path, objective="nll"))),
                              (SFTTrainer, SFTConfig(**base_args(tmp_path)))):
        trainer = trainer_cls(model=tiny_model("mixtral", **kw), args=args, train_dataset=prompt_completion(),
                              processing_class=TOK)
        assert trainer.aux_loss_enabled
        trainer.train()
        losses.append(trainer.state.log_history[0])
    assert losses[0]["loss"] == pytest.approx(losses[1]["loss"], rel=1e-5)
    assert losses[0]["aux_loss"] == pytest.approx(losses[1]["aux_loss"], rel=1e-5) and losses[0]["aux_loss"] > 0
