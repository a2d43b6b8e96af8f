"""Plant each training bug the tests must catch, one at a time, run the tests named for it, restore.

    .venv/bin/python dev/plant_bugs.py --list          # the bugs and the tests named for each
    .venv/bin/python dev/plant_bugs.py                 # plant every bug in turn (slow: real training)
    .venv/bin/python dev/plant_bugs.py ppo-kl-bonus    # only the bugs named

Each bug is a text replacement in one source file (`old` must occur exactly once: if the code has
moved on, the bug is reported `stale` and its entry needs updating). The file is written back byte
for byte after the tests ran, also on Ctrl-C; a file with uncommitted changes is refused, so that a
killed run can be undone with `git checkout -- FILE`. A bug counts as caught when pytest exits 1
(a test failed); any other exit (an import or collection error) is reported as such, not as caught.
The list and what caught each are in docs/developers/testing.md ("Planted bugs").
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
T = "tests/train/"
PPO_ROLLOUT = (
    T + "test_ppo.py::test_after_updates_the_rollout_penalises_kl_to_an_independent_reference_and_whitens_advantages"
)
PPO_KL = T + "test_ppo.py::test_a_large_kl_coef_ends_closer_to_the_reference_than_none"
REWARD_LEARNS = T + "test_reward.py::test_reward_model_learns_the_marker_preference"
DPO_LEARNS = T + "test_dpo.py::test_dpo_raises_held_out_preference_accuracy_over_the_start_model"


@dataclass(frozen=True)
class Bug:
    name: str
    what: str
    file: str
    old: str
    new: str
    tests: tuple[str, ...]


BUGS = [
    Bug(
        "reward-scheme-ignored",
        "the reward stage trains with the small margins whatever `margin` says",
        "train/reward.py",
        "preference_dataset(raw, cfg.data, margin_scheme=cfg.margin)",
        'preference_dataset(raw, cfg.data, margin_scheme="small")',
        (T + "test_reward.py::test_the_stage_trains_with_the_configured_margin_scheme",),
    ),
    Bug(
        "reward-margins-dropped",
        "the reward stage hands the trainer no margin column (plain Bradley-Terry loss)",
        "train/reward.py",
        "preference_dataset(raw, cfg.data, margin_scheme=cfg.margin)",
        "preference_dataset(raw, cfg.data)",
        (T + "test_reward.py::test_the_stage_trains_with_the_configured_margin_scheme",),
    ),
    Bug(
        "reward-margins-negated",
        "every margin negated: the loss becomes −log σ(Δ + m)",
        "train/datasets.py",
        "return [s.margin(MarginScheme(scheme)) if s is not None else 0.0 for s in strengths(ds, cfg)]",
        "return [-s.margin(MarginScheme(scheme)) if s is not None else 0.0 for s in strengths(ds, cfg)]",
        (T + "test_reward.py::test_the_stage_trains_with_the_configured_margin_scheme",),
    ),
    Bug(
        "ppo-ref-is-policy",
        "PPO's reference log-probs computed with the policy itself (KL ≡ 0)",
        "train/ppo/rollout.py",
        "ref_logprobs, _ = trainer._chunked(query, query_mask, response, mask, trainer.ref_adapter)",
        "ref_logprobs, _ = trainer._chunked(query, query_mask, response, mask, POLICY)",
        (PPO_ROLLOUT, PPO_KL),
    ),
    Bug(
        "ppo-kl-dropped",
        "PPO's per-token KL penalty dropped from the rewards",
        "train/ppo/rollout.py",
        "scores, logprobs, ref_logprobs, mask, cfg.kl_coef, whitening=cfg.whiten, batch_sum=batch_sum",
        "scores, logprobs, ref_logprobs, mask, 0.0, whitening=cfg.whiten, batch_sum=batch_sum",
        (PPO_ROLLOUT, PPO_KL),
    ),
    Bug(
        "ppo-kl-bonus",
        "PPO's KL term turned into a bonus (+kl_coef·KL)",
        "train/ppo/rollout.py",
        "scores, logprobs, ref_logprobs, mask, cfg.kl_coef, whitening=cfg.whiten, batch_sum=batch_sum",
        "scores, logprobs, ref_logprobs, mask, -cfg.kl_coef, whitening=cfg.whiten, batch_sum=batch_sum",
        (PPO_ROLLOUT, PPO_KL),
    ),
    Bug(
        "ppo-advantages-not-whitened",
        "PPO trains on the raw GAE advantages",
        "train/ppo/rollout.py",
        "advantages = whiten(advantages, mask, batch_sum=batch_sum)",
        "advantages = advantages * mask",
        (PPO_ROLLOUT,),
    ),
    Bug(
        "ppo-optimizer-defaults",
        "PPO builds plain AdamW with the default betas whatever optim / adam_beta1 / adam_beta2 say",
        "train/ppo/__init__.py",
        "self.optimizer = build_optimizer(cfg, params)",
        "self.optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)",
        (T + "test_ppo.py::test_ppo_builds_the_optimizer_the_config_names",),
    ),
    Bug(
        "dpo-beta-one",
        "DPO trains with β = 1 whatever `beta` says (the summary still records the config's)",
        "train/dpo.py",
        "beta=cfg.beta,",
        "beta=1.0,",
        (T + "test_dpo.py::test_dpo_trains_with_the_configured_beta",),
    ),
    Bug(
        "qwen3-trl-template",
        "Qwen 3 SFT trains with TRL's variant (a think block in every earlier answer)",
        "train/chat_templates.py",
        "qwen3 = _qwen3_training(template)",
        "qwen3 = None",
        (T + "test_chat_templates.py::test_qwen3_several_turn_rows_train_on_the_models_own_rendering",),
    ),
    Bug(
        "multi-turn-not-refused",
        "SFT trains several-turn rows on a template that renders earlier turns differently",
        "train/chat_templates.py",
        "    if choice.same_multi_turn:\n        return\n",
        "    return\n",
        (T + "test_chat_templates.py::test_sft_refuses_several_turn_rows_a_training_template_renders_differently",),
    ),
    Bug(
        "tldr-prefix-not-moved",
        "data.answer_prefix stripped from the answers but never put at the end of the prompt",
        "train/datasets.py",
        'if cfg.answer_prefix_to == "prompt":',
        "if False:",
        (T + "test_recipes.py::test_tldr_recipe_reads_the_carperai_shapes",),
    ),
    Bug(
        "score-flags-swapped",
        "`train score`'s threshold table reads the chosen answers' flags for the rejected ones",
        "train/reward.py",
        '["chosen_unsafe", "rejected_unsafe"] if is_pairs else ["unsafe"]',
        '["rejected_unsafe", "chosen_unsafe"] if is_pairs else ["unsafe"]',
        (T + "test_reward.py::test_score_command_scores_pairs_and_responses",),
    ),
    Bug(
        "answers-as-length",
        "the reward and DPO stages train on each answer reduced to its length (as many 'x' as it has words)",
        "train/datasets.py",
        "    move_answer_prefix(prompts, {cfg.chosen_column: chosen, cfg.rejected_column: rejected}, cfg)\n",
        "    move_answer_prefix(prompts, {cfg.chosen_column: chosen, cfg.rejected_column: rejected}, cfg)\n"
        '    chosen, rejected = ([" ".join(["x"] * len(t.split())) for t in col] for col in (chosen, rejected))\n',
        (REWARD_LEARNS, DPO_LEARNS),
    ),
    Bug(
        "reward-scores-length",
        "the reward stage's (and `train score`'s) score of an answer is its token count, not the model's",
        "train/reward.py",
        "scores += logits.squeeze(-1).float().cpu().tolist()",
        "scores += mask.sum(-1).float().tolist()",
        (REWARD_LEARNS,),
    ),
    Bug(
        "reward-pairs-swapped",
        "the reward stage trains on every pair with chosen and rejected swapped",
        "train/reward.py",
        "train_ds = split(cfg.data.split)",
        'train_ds = split(cfg.data.split).rename_columns({"chosen": "rejected", "rejected": "chosen"})',
        (REWARD_LEARNS,),
    ),
    Bug(
        "dpo-pairs-swapped",
        "DPO trains on every pair with chosen and rejected swapped",
        "train/dpo.py",
        'train_ds = preference_dataset(train_raw, cfg.data).remove_columns("strength")',
        'train_ds = preference_dataset(train_raw, cfg.data).remove_columns("strength")'
        '.rename_columns({"chosen": "rejected", "rejected": "chosen"})',
        (DPO_LEARNS,),
    ),
    Bug(
        "dpo-lr-hundredth",
        "DPO trains at a hundredth of `lr` (its implicit reward margin still rises above the 0 it starts at)",
        "train/dpo.py",
        "**trainer_kwargs(cfg),",
        '**{**trainer_kwargs(cfg), "learning_rate": cfg.lr / 100},',
        (DPO_LEARNS,),
    ),
    Bug(
        "merged-save-drops-adapter",
        "save: merged writes the base model without the trained adapter",
        "train/models.py",
        "merged = model.merge_and_unload()",
        "merged = model.unload()",
        (DPO_LEARNS,),
    ),
    Bug(
        "score-pairs-swapped",
        "`train score` writes each pair's chosen reward as rejected_reward and the other way round",
        "train/reward.py",
        'rec["chosen_reward"], rec["rejected_reward"] = c, r',
        'rec["chosen_reward"], rec["rejected_reward"] = r, c',
        (T + "test_reward.py::test_score_command_scores_pairs_and_responses",),
    ),
    Bug(
        "marker-fixture-unbalanced",
        "the marker fixture takes a distractor of any token count (chosen and rejected lengths differ again)",
        "tests/train/conftest.py",
        'if len(tokenizer(rejected, add_special_tokens=False)["input_ids"]) == n_chosen:',
        "if True:",
        (T + "test_marker_data.py",),
    ),
]


def _dirty(path: Path) -> bool:
    done = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", str(path)], cwd=REPO, check=False)
    return done.returncode != 0


def plant(bug: Bug, python: str) -> tuple[str, float]:
    """Plant `bug`, run its tests, restore the file; (outcome, seconds)."""
    path = REPO / bug.file
    original = path.read_bytes()
    text = original.decode("utf-8")
    if text.count(bug.old) != 1:
        return f"stale: the text to replace occurs {text.count(bug.old)} times in {bug.file}", 0.0
    if _dirty(path):
        return f"refused: {bug.file} has uncommitted changes (commit or stash them first)", 0.0
    started = time.perf_counter()
    try:
        path.write_text(text.replace(bug.old, bug.new), encoding="utf-8")
        done = subprocess.run(
            [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", *bug.tests],
            cwd=REPO,
            env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")},
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        path.write_bytes(original)
    seconds = time.perf_counter() - started
    if done.returncode == 1:
        failed = [line.split()[1] for line in done.stdout.splitlines() if line.startswith("FAILED ")]
        return "caught: " + (", ".join(f.removeprefix(T) for f in failed) or "a test failed"), seconds
    if done.returncode == 0:
        return "NOT CAUGHT: the tests passed", seconds
    return f"error (pytest exit {done.returncode}): {done.stdout.strip().splitlines()[-1:]}", seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="bugs to plant (default: all)")
    parser.add_argument("--list", action="store_true", help="list the bugs and their tests, plant nothing")
    parser.add_argument("--python", default=sys.executable, help="the interpreter that runs pytest")
    args = parser.parse_args(argv)
    known = {b.name: b for b in BUGS}
    unknown = [n for n in args.names if n not in known]
    if unknown:
        parser.error(f"unknown bug(s) {', '.join(unknown)} (known: {', '.join(known)})")
    bugs = [known[n] for n in args.names] if args.names else BUGS
    if args.list:
        for b in bugs:
            print(f"{b.name}: {b.what} ({b.file})\n  " + "\n  ".join(b.tests))
        return 0
    missed = 0
    for b in bugs:
        outcome, seconds = plant(b, args.python)
        missed += not outcome.startswith("caught")
        print(f"{b.name:28} {outcome} ({seconds:.0f} s)", flush=True)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
