"""prefkit's PPO on the tiny model: reward rises with bounded KL, and an interrupted run resumes."""

import json
import math
from pathlib import Path

import pytest

from prefkit.data.schema import Prompt

PROMPTS = [
    Prompt(q) for q in ("Xin chào", "Viết một câu", "Tính tổng", "Giải thích", "Hà Nội", "mùa thu", "phở bò", "cảm ơn")
]
# lm_head in the targets: the random tiny model's near-uniform output can only sharpen through it
TARGETS = ["q_proj", "v_proj", "up_proj", "down_proj", "lm_head"]


def count_a(prompts, completions):
    """Rule-based reward: how many times the letter 'a' appears in the response."""
    return [float(c.count("a")) for c in completions]


def ppo_config(model_path, out, **kw):
    from prefkit.train.config import LoraSection, ModelConfig
    from prefkit.train.ppo import PpoConfig

    base = dict(
        output_dir=Path(out),
        model=ModelConfig(path=str(model_path)),
        lora=LoraSection(r=8, alpha=16, dropout=0.0, target_modules=TARGETS),
        batch_size=16,
        mini_batch_size=8,
        ppo_epochs=4,
        max_steps=15,
        lr=1e-2,
        max_new_tokens=16,
        kl_coef=0.05,
        save_steps=0,
        seed=0,
    )
    return PpoConfig(**{**base, **kw})


def kl_bound(hist, kl_coef):
    """The largest KL a run that did its job can have: PPO maximises E[score] − β·KL, and the reference
    itself reaches E_ref[score] at KL 0, so a policy at least as good on that objective has
    KL ≤ (E[score] − E_ref[score]) / β. Scores and KL are 3-rollout means at the start and the end."""
    first = sum(h["reward"] for h in hist[:3]) / 3
    last = sum(h["reward"] for h in hist[-3:]) / 3
    return first, last, (last - first) / kl_coef


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 3, 4])  # 3 broke an old hand-tuned bound (KL < 30), 4 the linear lr decay
def test_ppo_raises_rule_based_reward_with_bounded_kl(tiny_model_path, tmp_path, seed):
    """15 rollouts against a rule (letters 'a' per answer) at a constant learning rate: the mean reward
    rises by more than one letter and the end KL stays under the objective's bound (`kl_bound`).
    Seeds: 12 of 12 pass (0–11; the worst rises 3.2 letters, its KL is a third of the bound); with the
    default linear decay to 0 the rise was too slow for 1 seed in 10."""
    from prefkit.train.ppo import run

    cfg = ppo_config(tiny_model_path, tmp_path / "ppo", seed=seed, lr_scheduler="constant")
    summary = run(cfg, reward_fn=count_a, prompts=PROMPTS)
    hist = summary["log_history"]
    assert len(hist) == 15
    first, last, bound = kl_bound(hist, cfg.kl_coef)
    assert last > first + 1.0, (first, last)
    kl_end = sum(h["kl"] for h in hist[-3:]) / 3
    assert kl_end <= bound, (kl_end, bound, [h["kl"] for h in hist])  # nats per answer of ≤ 16 tokens
    for key in ("entropy", "clipfrac", "value_loss", "policy_loss"):
        assert key in hist[-1]
    on_disk = json.loads((tmp_path / "ppo" / "summary.json").read_text())
    assert on_disk["stage"] == "ppo" and on_disk["steps"] == 15 and on_disk["steps_per_s"] > 0
    assert (tmp_path / "ppo" / "model" / "adapter_config.json").exists()


def test_ppo_resumes_after_interruption_from_its_checkpoint(tiny_model_path, tmp_path):
    import torch
    from peft import load_peft_weights

    from prefkit.train.ppo import run

    calls = {"n": 0}

    def crashing_reward(prompts, completions):
        calls["n"] += 1
        if calls["n"] == 4:
            raise RuntimeError("judge went away")
        return count_a(prompts, completions)

    out = tmp_path / "ppo"
    cfg = ppo_config(
        tiny_model_path,
        out,
        batch_size=4,
        mini_batch_size=4,
        ppo_epochs=1,
        max_steps=5,
        max_new_tokens=8,
        save_steps=2,
        save_total_limit=None,
    )
    with pytest.raises(RuntimeError, match="judge went away"):
        run(cfg, reward_fn=crashing_reward, prompts=PROMPTS)
    assert (out / "checkpoint-2").is_dir() and not (out / "checkpoint-4").exists()
    assert not (out / "summary.json").exists() and not (out / "model").exists()
    saved = load_peft_weights(str(out / "checkpoint-2" / "policy"))

    resumed = ppo_config(
        tiny_model_path,
        out,
        batch_size=4,
        mini_batch_size=4,
        ppo_epochs=1,
        max_steps=5,
        max_new_tokens=8,
        save_steps=2,
        save_total_limit=None,
        resume_from_checkpoint="latest",
    )
    from prefkit.train.ppo import PpoTrainer

    trainer = PpoTrainer(resumed, reward_fn=count_a, prompts=PROMPTS)
    trainer.load_checkpoint(out / "checkpoint-2")
    from peft import get_peft_model_state_dict

    loaded = get_peft_model_state_dict(trainer._peft, adapter_name="default")
    assert set(loaded) == set(saved)
    assert all(torch.equal(loaded[k].cpu(), saved[k].cpu()) for k in saved)
    assert trainer.step == 2 and [h["step"] for h in trainer.history] == [1, 2]

    summary = trainer.train()
    assert summary["metrics"]["resumed_from_step"] == 2
    assert [h["step"] for h in summary["log_history"]] == [1, 2, 3, 4, 5]
    assert calls["n"] == 4  # the resumed run used its own reward function for steps 3..5


VERBS = ["Giải thích", "Mô tả", "Kể về", "Viết về", "Nói về"]
TOPICS = ["phở", "cà phê", "Hà Nội", "mùa thu", "quang hợp", "bánh mì", "sông Hồng", "áo dài", "trà", "lúa"]


MARKER_TEXT = " cảm ơn xin mời"  # its tokens are the markers the reward model learns to prefer


def own_answer_pairs(model_path, seed: int, *, answers: int = 2, max_new_tokens: int = 16):
    """Preference pairs on the policy's own kind of text: for each of 50 questions (none of them a PPO
    prompt), `answers` answers the start model samples; each is the rejected answer of a pair whose chosen
    answer is the same tokens with two of them, at random places, swapped for tokens of MARKER_TEXT, placed
    so that both answers, decoded and tokenized again as the trainer reads them, have the same number of
    tokens (length tells nothing; swapped blindly, chosen read back longer in ~45% of pairs and shorter in
    ~5%). An answer with no such placement in 20 tries is left out (none at seeds 0–4)."""
    import random

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from prefkit.data.schema import PreferenceRow, Strength

    tok = AutoTokenizer.from_pretrained(model_path, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(model_path).eval()
    markers = sorted(set(tok(MARKER_TEXT, add_special_tokens=False)["input_ids"]))
    questions = [f"{v} {t}." for v in VERBS for t in TOPICS]
    texts = [
        tok.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
        for q in questions
        for _ in range(answers)
    ]
    enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    torch.manual_seed(seed)
    with torch.no_grad():
        out = model.generate(
            **enc, do_sample=True, top_k=0, max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id
        )
    rng = random.Random(seed)
    rows = []
    for i, ids in enumerate(out[:, enc["input_ids"].shape[1] :].tolist()):
        ids = [t for t in ids if t not in (tok.pad_token_id, tok.eos_token_id)]
        if len(ids) < 4:
            continue
        rejected = tok.decode(ids)
        length = len(tok(rejected, add_special_tokens=False)["input_ids"])
        for _ in range(20):  # placements until both texts read back as the same number of tokens
            marked = list(ids)
            for pos in rng.sample(range(len(ids)), 2):
                marked[pos] = rng.choice(markers)
            chosen = tok.decode(marked)
            if len(tok(chosen, add_special_tokens=False)["input_ids"]) == length:
                break
        else:
            continue
        rows.append(
            PreferenceRow(question=questions[i // answers], chosen=chosen, rejected=rejected, strength=Strength.BETTER)
        )
    return rows


def ppo_on_a_trained_reward_model(model_path, out: Path, seed: int) -> tuple[dict, dict]:
    """(the reward stage's summary, PPO's summary): a reward model trained on `own_answer_pairs`, then
    PPO rewarded by the saved model, every step seeded by `seed`."""
    from prefkit.core.config import load_config
    from prefkit.data.export import export_dataset
    from prefkit.train import reward
    from prefkit.train.config import RewardConfig
    from prefkit.train.ppo import run
    from prefkit.train.scoring import RewardSection

    export_dataset(own_answer_pairs(model_path, seed), out / "pairs", test_size=0.25, seed=seed, margin="none")
    rm = reward.run(
        load_config(
            RewardConfig,
            None,
            [
                f"model.path={model_path}",
                f"data.source={out / 'pairs'}",
                f"output_dir={out / 'rm'}",
                f"seed={seed}",
                "margin=none",
                "max_steps=40",
                "lr=3e-3",
                "batch_size=8",
                "save_steps=1000",
                "lora.r=8",
                "lora.dropout=0",
            ],
        )
    )
    cfg = ppo_config(
        model_path,
        out / "ppo",
        reward=RewardSection(model=rm["model_dir"]),
        max_steps=16,
        kl_coef=0.02,
        lr_scheduler="constant",
        seed=seed,
    )
    return rm, run(cfg, prompts=PROMPTS)  # the reward comes from the config: the saved reward model


@pytest.mark.slow
@pytest.mark.seeds(0)
def test_ppo_raises_a_trained_reward_models_score(tiny_model_path, learning_seed, tmp_path):
    """The reward stage learns, from pairs of the start model's own answers, to prefer a few marker tokens
    (`own_answer_pairs`), so its score varies on what PPO samples (a reward model trained on other text,
    e.g. answers ending with a marker sentence, gives PPO's answers all nearly the same score); PPO,
    rewarded by the saved model, raises that score by far more than the noise of the first rollouts,
    with the end KL under the objective's bound (`kl_bound`).
    Seeds (data, reward model and PPO together): 12 of 12 pass (0–11)."""
    rm, summary = ppo_on_a_trained_reward_model(tiny_model_path, tmp_path, seed=learning_seed)
    # it learned the markers: on equal-length pairs a length-only scorer gets 0 (0.5 with a coin)
    assert rm["metrics"]["test_accuracy"] >= 0.75, rm["metrics"]
    hist = summary["log_history"]
    spread = sum(h["reward_std"] for h in hist[:3]) / 3
    held_out = next(h for h in rm["log_history"] if "eval_max_reward" in h)
    scale = held_out["eval_max_reward"] - held_out["eval_min_reward"]  # the scores' range on held-out answers
    assert spread >= 0.1 * scale > 0, (spread, scale)  # not flat on PPO's answers
    first = sum(h["reward"] for h in hist[:3]) / 3
    last = sum(h["reward"] for h in hist[-3:]) / 3
    std_err = spread / math.sqrt(3 * 16)  # of a 3-rollout mean of the first rollouts' scores
    assert last - first > 4 * std_err, (first, last, std_err)
    kl_end = sum(h["kl"] for h in hist[-3:]) / 3
    assert kl_end <= kl_bound(hist, 0.02)[2], (kl_end, [h["kl"] for h in hist])


def test_whiten_configs_and_the_old_whiten_rewards_key(tmp_path):
    from prefkit.core.config import load_config
    from prefkit.core.errors import ConfigError
    from prefkit.train.ppo import PpoConfig

    repo = Path(__file__).resolve().parents[2]
    assert load_config(PpoConfig, repo / "configs/train/ppo-gpu.yaml").whiten == "sequence"  # Llama 2
    assert load_config(PpoConfig, repo / "configs/train/ppo-tiny.yaml").whiten == "none"
    old = tmp_path / "old.yaml"
    old.write_text("model: {path: m}\nwhiten_rewards: true\n")
    with pytest.raises(ConfigError, match="whiten_rewards: true is replaced by whiten: sequence") as err:
        load_config(PpoConfig, old)
    assert "tokens (the old whiten_rewards: true" in str(err.value)
    with pytest.raises(ConfigError, match="rollout_batch_size"):
        load_config(PpoConfig, None, ["model.path=m", "rollout_batch_size=0"])


def test_chunked_token_logprobs_equal_full_logits_values_and_gradients():
    import torch

    from prefkit.train.ppo import token_logprobs

    torch.manual_seed(0)
    head = torch.nn.Linear(6, 50)
    hidden = torch.randn(3, 5, 6, requires_grad=True)
    labels = torch.randint(0, 50, (3, 5))
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0]]).float()
    full = torch.log_softmax(head(hidden).float() / 0.7, -1).gather(-1, labels[..., None]).squeeze(-1) * mask
    (full * torch.arange(1.0, 6.0)).sum().backward()
    want_h, want_w = hidden.grad.clone(), head.weight.grad.clone()
    hidden.grad, head.weight.grad = None, None
    chunked, _ = token_logprobs(head, hidden, labels, mask, 0.7, chunk_tokens=3)  # 10 real tokens: 4 chunks
    assert torch.allclose(chunked, full, atol=1e-6)
    (chunked * torch.arange(1.0, 6.0)).sum().backward()
    assert torch.allclose(hidden.grad, want_h, atol=1e-6) and torch.allclose(head.weight.grad, want_w, atol=1e-6)
    with torch.no_grad():
        lp, ent = token_logprobs(head, hidden, labels, mask, 0.7, with_entropy=True, chunk_tokens=4)
        p = torch.softmax(head(hidden) / 0.7, -1)
        assert torch.allclose(lp, full, atol=1e-6)
        assert torch.allclose(ent, -(p * p.log()).sum(-1) * mask, atol=1e-5)


def test_chunked_rollout_and_loss_passes_match_one_pass(tiny_model_path, tmp_path):
    """forward_batch_size splits the rollout's forwards and each mini-batch's loss: the log-probs equal the
    model's own full logits, and one update's gradient (Adam's first moment) equals the unchunked one."""
    import torch

    from prefkit.train.ppo import POLICY, PpoTrainer

    def trainer(**kw):
        cfg = ppo_config(
            tiny_model_path,
            tmp_path / "ppo",
            batch_size=8,
            mini_batch_size=8,
            ppo_epochs=1,
            max_steps=1,
            max_new_tokens=8,
            max_grad_norm=0.0,
            **kw,
        )
        t = PpoTrainer(cfg, reward_fn=count_a, prompts=PROMPTS)
        torch.manual_seed(1)
        with torch.no_grad():  # a policy adapter that differs from the reference
            for name, p in t._peft.named_parameters():
                if "lora_B" in name and ".default" in name:
                    p.normal_(0, 0.2)
        return t

    one = trainer()
    torch.manual_seed(2)
    ro = one.rollout(PROMPTS)
    q = torch.cat([ro.query, ro.response], dim=1)
    attn = torch.cat([ro.query_mask, ro.mask.long()], dim=1)
    pos = (attn.cumsum(-1) - 1).clamp(min=0)
    P = ro.query.shape[1]
    with torch.no_grad():
        one._peft.set_adapter(POLICY)
        logits = one.model(input_ids=q, attention_mask=attn, position_ids=pos).logits[:, P - 1 : -1].float()
        full = torch.log_softmax(logits, -1).gather(-1, ro.response[..., None]).squeeze(-1) * ro.mask
        with one._peft.disable_adapter():
            ref_logits = one.model(input_ids=q, attention_mask=attn, position_ids=pos).logits[:, P - 1 : -1].float()
        ref_full = torch.log_softmax(ref_logits, -1).gather(-1, ro.response[..., None]).squeeze(-1) * ro.mask
    assert torch.allclose(ro.logprobs, full, atol=1e-5)
    assert not torch.allclose(full, ref_full, atol=1e-3)  # the policy is not the reference here
    chunked = trainer(forward_batch_size=3, rollout_batch_size=3)
    lp, _ = chunked._chunked(ro.query, ro.query_mask, ro.response, ro.mask, POLICY)
    ref, _ = chunked._chunked(ro.query, ro.query_mask, ro.response, ro.mask, None)
    assert torch.allclose(lp, full, atol=1e-5) and torch.allclose(ref, ref_full, atol=1e-5)
    assert chunked.rollout(PROMPTS).response.shape[0] == 8  # three generate calls (3 + 3 + 2 prompts)

    moments = []
    for t in (one, chunked):
        torch.manual_seed(3)
        t.ppo_update(ro)
        moments.append(
            [
                t.optimizer.state[p]["exp_avg"].clone() if p in t.optimizer.state else None
                for g in t.optimizer.param_groups
                for p in g["params"]
            ]
        )
    assert [a is None for a in moments[0]] == [b is None for b in moments[1]]
    moments = [[a for a in m if a is not None] for m in moments]
    assert len(moments[0]) > 0
    assert all(torch.allclose(a, b, atol=1e-6, rtol=1e-4) for a, b in zip(*moments, strict=True))
    assert any(a.abs().sum() > 0 for a in moments[0])


@pytest.fixture(scope="module")
def sft_adapter(tiny_model_path, tmp_path_factory):
    """A causal-LM LoRA adapter with non-zero weights (r=4, unlike the PPO config's r=8), as SFT saves one."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    lora = LoraConfig(
        r=4, lora_alpha=8, lora_dropout=0.0, target_modules=TARGETS, init_lora_weights=False, task_type="CAUSAL_LM"
    )
    out = tmp_path_factory.mktemp("sft") / "model"
    get_peft_model(base, lora).save_pretrained(out)
    return out


def test_ppo_from_an_sft_adapter_trains_it_against_the_sft_model_as_reference(tiny_model_path, sft_adapter, tmp_path):
    """Started from model.adapter, the policy is exactly the SFT model at the start (KL 0 on the first
    rollout, the reference being a frozen copy of the adapter, not the bare base); the saved adapter is
    the SFT adapter trained further, over the bare base; `save: merged` is that adapter merged."""
    import torch
    from peft import PeftModel, load_peft_weights
    from transformers import AutoModelForCausalLM

    from prefkit.train.ppo import POLICY, REF, PpoTrainer

    cfg = ppo_config(
        tiny_model_path,
        tmp_path / "ppo",
        batch_size=4,
        mini_batch_size=4,
        ppo_epochs=1,
        max_steps=2,
        max_new_tokens=8,
        lr=1e-2,
    )
    cfg.model.adapter = str(sft_adapter)
    trainer = PpoTrainer(cfg, reward_fn=count_a, prompts=PROMPTS)
    assert trainer.ref_adapter == REF
    torch.manual_seed(0)
    ro = trainer.rollout(PROMPTS[:4])
    ref, _ = trainer._chunked(ro.query, ro.query_mask, ro.response, ro.mask, REF)
    bare, _ = trainer._chunked(ro.query, ro.query_mask, ro.response, ro.mask, None)
    assert torch.allclose(ro.logprobs, ref, atol=1e-6) and ro.stats["kl"] == pytest.approx(0.0, abs=1e-5)
    assert not torch.allclose(ref, bare, atol=1e-3)  # the reference is the SFT model, not the base
    frozen = {n: p.detach().clone() for n, p in trainer._peft.named_parameters() if f".{REF}." in n}
    in_optimizer = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    assert frozen and not any(id(p) in in_optimizer for n, p in trainer._peft.named_parameters() if n in frozen)

    summary = trainer.train()
    assert all(torch.equal(p, frozen[n]) for n, p in trainer._peft.named_parameters() if n in frozen)
    saved = Path(summary["model_dir"])
    config = json.loads((saved / "adapter_config.json").read_text())
    assert config["r"] == 4 and config["base_model_name_or_path"] == str(tiny_model_path)  # SFT's adapter, continued
    sft_w, ppo_w = load_peft_weights(str(sft_adapter)), load_peft_weights(str(saved))
    assert set(sft_w) == set(ppo_w) and any(not torch.equal(sft_w[k], ppo_w[k]) for k in sft_w)
    policy = trainer._peft
    policy.set_adapter(POLICY)

    merged_cfg = ppo_config(
        tiny_model_path,
        tmp_path / "ppo-merged",
        batch_size=4,
        mini_batch_size=4,
        ppo_epochs=1,
        max_steps=1,
        max_new_tokens=8,
        save="merged",
    )
    merged_cfg.model.adapter = str(saved)
    merged_trainer = PpoTrainer(merged_cfg, reward_fn=count_a, prompts=PROMPTS)
    out = merged_trainer.save_final(tmp_path / "merged")  # no training: the merge of `saved` over the base
    merged = AutoModelForCausalLM.from_pretrained(out)
    expected = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_model_path), str(saved)
    ).merge_and_unload()
    ids = torch.tensor([[1, 5, 9, 12, 7]])
    assert torch.allclose(merged(ids).logits, expected(ids).logits, atol=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA GPU")
def test_qlora_ppo_from_an_sft_adapter_saves_a_full_precision_merge(tiny_model_path, sft_adapter, tmp_path):
    """QLoRA PPO from an SFT adapter: KL 0 at the start (reference = the SFT adapter on the same 4-bit
    base) and `save: merged` comes from a fresh full-precision base, so it equals the saved adapter
    merged at full precision (a merge into the 4-bit base would be rounded, see test_chaining)."""
    import importlib.util

    if importlib.util.find_spec("bitsandbytes") is None:
        pytest.skip("needs bitsandbytes (prefkit[gpu])")
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from prefkit.train.config import QuantConfig
    from prefkit.train.ppo import PpoTrainer

    cfg = ppo_config(
        tiny_model_path,
        tmp_path / "ppo",
        batch_size=4,
        mini_batch_size=4,
        ppo_epochs=1,
        max_steps=2,
        max_new_tokens=8,
        quant=QuantConfig(qlora=True),
        save="merged",
        forward_batch_size=2,
    )
    cfg.model.adapter = str(sft_adapter)
    trainer = PpoTrainer(cfg, reward_fn=count_a, prompts=PROMPTS)
    summary = trainer.train()
    assert summary["log_history"][0]["kl"] == pytest.approx(0.0, abs=1e-3)
    adapter_dir = tmp_path / "adapter"
    trainer._peft.save_pretrained(adapter_dir, selected_adapters=["default"])
    merged = AutoModelForCausalLM.from_pretrained(summary["model_dir"], dtype=torch.float32)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.bfloat16)
    expected = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload().float()
    for (name, w), (_, e) in zip(merged.named_parameters(), expected.named_parameters(), strict=True):
        assert torch.allclose(w, e, atol=1e-2), name


def test_a_rollouts_answers_do_not_depend_on_how_its_batch_is_split(tiny_model_path, tmp_path):
    """Row i of step s is sampled with its own keyed noise: generated 3 prompts at a time, or as the
    second half of the batch (a second process's share, `first_row=4`), it gets the same answer and
    log-probs; the global random stream plays no part, and the next step draws anew."""
    import torch

    from prefkit.train.ppo import PpoTrainer

    cfg = ppo_config(
        tiny_model_path, tmp_path / "ppo", batch_size=8, mini_batch_size=8, ppo_epochs=1, max_steps=1, max_new_tokens=8
    )
    whole = PpoTrainer(cfg, reward_fn=count_a, prompts=PROMPTS).rollout(PROMPTS)
    chunked_cfg = ppo_config(
        tiny_model_path,
        tmp_path / "ppo2",
        batch_size=8,
        mini_batch_size=8,
        ppo_epochs=1,
        max_steps=1,
        max_new_tokens=8,
        rollout_batch_size=3,
    )
    chunked = PpoTrainer(chunked_cfg, reward_fn=count_a, prompts=PROMPTS)
    torch.manual_seed(123)
    assert torch.equal(chunked.rollout(PROMPTS).response, whole.response)
    half = chunked.rollout(PROMPTS[4:], first_row=4)
    width = half.response.shape[1]
    assert torch.equal(half.response, whole.response[4:, :width]) and not whole.mask[4:, width:].any()
    assert torch.allclose(half.logprobs, whole.logprobs[4:, :width], atol=1e-5)
    assert not torch.equal(chunked.rollout(PROMPTS, step=1).response, whole.response)  # each step draws anew


def _full_logprobs(model, ro, *, temperature=1.0):
    """Per-token log-probs of the rollout's answers from `model`'s own full logits (no chunking)."""
    import torch

    ids = torch.cat([ro.query, ro.response], dim=1)
    attn = torch.cat([ro.query_mask, ro.mask.long()], dim=1)
    pos = (attn.cumsum(-1) - 1).clamp(min=0)
    P = ro.query.shape[1]
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=attn, position_ids=pos).logits[:, P - 1 : -1].float()
    lp = torch.log_softmax(logits / temperature, -1)
    return lp.gather(-1, ro.response[..., None]).squeeze(-1) * ro.mask


@pytest.mark.parametrize("start", ["new-adapter", "sft-adapter"])
def test_after_updates_the_rollout_penalises_kl_to_an_independent_reference_and_whitens_advantages(
    start, tiny_model_path, sft_adapter, tmp_path
):
    """What the update trains on, recomputed by hand after three PPO updates, when the policy has moved:
    the rollout's reference log-probs equal a separately loaded reference model's (the bare base, or the
    SFT adapter loaded afresh), its KL is > 0, each token's reward is −kl_coef·(log π − log π_ref) plus the
    rule's score on the last token, and the advantages are GAE of those rewards whitened over the batch's
    real tokens (mean 0, std 1)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from prefkit.train.ppo import POLICY, PpoTrainer
    from prefkit.train.ppo.losses import gae

    cfg = ppo_config(
        tiny_model_path, tmp_path / "ppo", batch_size=8, mini_batch_size=4, ppo_epochs=2, max_new_tokens=8, kl_coef=0.3
    )
    if start == "sft-adapter":
        cfg.model.adapter = str(sft_adapter)
    trainer = PpoTrainer(cfg, reward_fn=count_a, prompts=PROMPTS)
    for step in range(3):
        trainer.ppo_update(trainer.rollout(trainer._batch_prompts(step), step=step))
    ro = trainer.rollout(PROMPTS, step=3)
    mask = ro.mask

    reference = AutoModelForCausalLM.from_pretrained(tiny_model_path)  # loaded apart from the trainer's weights
    if start == "sft-adapter":
        reference = PeftModel.from_pretrained(reference, str(sft_adapter))
    ref = _full_logprobs(reference.eval(), ro)
    trainer._peft.set_adapter(POLICY)
    policy = _full_logprobs(trainer._peft, ro)
    assert torch.allclose(ro.ref_logprobs, ref, atol=1e-5)
    assert torch.allclose(ro.logprobs, policy, atol=1e-5)
    kl_rows = ((policy - ref) * mask).sum(dim=1)
    assert kl_rows.mean().item() > 0.05, kl_rows  # the policy has moved away from the reference
    assert ro.stats["kl"] == pytest.approx(kl_rows.mean().item(), rel=1e-4, abs=1e-6)

    completions = trainer.tokenizer.batch_decode(ro.response, skip_special_tokens=True)
    scores = torch.tensor(count_a(PROMPTS, completions))
    rewards = -cfg.kl_coef * (policy - ref) * mask
    last = mask.sum(dim=1).long() - 1
    rewards[torch.arange(len(scores)), last] += scores
    assert torch.allclose(ro.rewards, rewards, atol=1e-5)

    advantages, returns = gae(rewards, ro.values, mask, gamma=cfg.gamma, lam=cfg.lam)
    n = mask.sum()
    mean = (advantages * mask).sum() / n
    std = (((advantages - mean) ** 2 * mask).sum() / (n - 1)).sqrt()
    assert torch.allclose(ro.advantages, (advantages - mean) / std * mask, atol=1e-4)
    assert torch.allclose(ro.returns, returns, atol=1e-4)
    got_mean = (ro.advantages * mask).sum() / n
    got_std = (((ro.advantages - got_mean) ** 2 * mask).sum() / (n - 1)).sqrt()
    assert abs(got_mean.item()) < 1e-5 and got_std.item() == pytest.approx(1.0, abs=1e-4)


@pytest.mark.slow
def test_a_large_kl_coef_ends_closer_to_the_reference_than_none(tiny_model_path, tmp_path):
    """The same run (same seed, same rule reward) with kl_coef 0 and with a large kl_coef: without the
    penalty the policy drifts far from the reference; with it, it ends with a fraction of that KL.
    Seeds: 10 of 10 pass (0–9; the end KL with the penalty is 0.12–0.43 of the KL without)."""
    from prefkit.train.ppo import run

    def end_kl(kl_coef: float) -> float:
        cfg = ppo_config(tiny_model_path, tmp_path / f"kl{kl_coef}", max_steps=8, kl_coef=kl_coef)
        hist = run(cfg, reward_fn=count_a, prompts=PROMPTS)["log_history"]
        return sum(h["kl"] for h in hist[-3:]) / 3

    free, held = end_kl(0.0), end_kl(1.0)
    assert free > 1.0 and held < 0.75 * free, (free, held)


def test_ppo_builds_the_optimizer_the_config_names(tiny_model_path, tmp_path):
    """`optim`, `adam_beta1`, `adam_beta2`, `weight_decay` and `lr` reach PPO's optimizer, as they reach the
    TRL stages' (Llama 2's PPO: AdamW with β2 = 0.95, weight decay 0.1); an optimizer that needs a missing
    package is refused before training."""
    import importlib.util

    import torch
    from transformers.optimization import Adafactor

    from prefkit.core.errors import ConfigError
    from prefkit.train.ppo import PpoTrainer

    def optimizer(**kw):
        cfg = ppo_config(tiny_model_path, tmp_path / "ppo", max_steps=1, **kw)
        return PpoTrainer(cfg, reward_fn=count_a, prompts=PROMPTS).optimizer

    adamw = optimizer(adam_beta1=0.8, adam_beta2=0.95, weight_decay=0.1, lr=3e-4)
    assert type(adamw) is torch.optim.AdamW
    group = adamw.param_groups[0]
    assert group["betas"] == (0.8, 0.95) and group["weight_decay"] == 0.1 and group["initial_lr"] == 3e-4
    assert isinstance(optimizer(optim="adafactor"), Adafactor)
    assert type(optimizer(optim="sgd", weight_decay=0.01)) is torch.optim.SGD
    if importlib.util.find_spec("bitsandbytes") is None:
        with pytest.raises(ConfigError, match="optim: paged_adamw_8bit"):
            optimizer(optim="paged_adamw_8bit")
