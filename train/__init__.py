"""Train room: SFT, margin reward model, DPO (and PPO, best-of-K, rounds) on the exported dataset.

Each stage is a function taking its config dataclass and returning the run summary (also written
to `<output_dir>/summary.json`):

    from prefkit.core.config import load_config
    from prefkit.train.config import RewardConfig
    from prefkit.train import reward
    summary = reward.run(load_config(RewardConfig, "configs/train/reward-tiny.yaml", ["max_steps=20"]))

`prefkit.train.sft.run`, `prefkit.train.reward.run`, `prefkit.train.dpo.run`, `prefkit.train.chain.run`
(SFT → reward → DPO).
Nothing heavy is imported here: torch loads with the stage modules.
"""
