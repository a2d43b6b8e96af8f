"""A new user's first hour with `prefkit train` (issue 21): a missing config or dataset is said at
once, before torch is imported; the tiny model's answers are random syllables, not broken bytes;
a small model on the CPU gets one torch thread unless the user chose a count."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# Runs the CLI in this process, then says whether torch was imported (it must not be, for these).
IN_PROCESS = """
import sys
from prefkit.cli import main
sys.argv = ["prefkit", *sys.argv[1:]]
try:
    main()
except SystemExit as e:
    print("exit", e.code, "torch" in sys.modules)
"""


def train(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_ENDPOINT": "http://127.0.0.1:9"}
    return subprocess.run(
        [sys.executable, "-c", IN_PROCESS, "train", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_no_config_names_config_with_an_example_before_torch(tmp_path: Path) -> None:
    proc = train("dpo", cwd=tmp_path)
    assert proc.stdout.split() == ["exit", "2", "False"]
    assert proc.stderr.startswith("error: prefkit train dpo needs a config: --config FILE")
    assert "`prefkit train dpo --config configs/train/dpo-tiny.yaml`" in proc.stderr
    assert (REPO / "configs" / "train" / "dpo-tiny.yaml").is_file()  # the example exists in a clone
    for stage in ("sft", "reward", "ppo", "rloo", "best-of-k", "chain"):
        example = f"configs/train/{stage}-tiny.yaml"
        assert (REPO / example).is_file(), example


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["data.source="], "error: data.source is empty: give the dataset in the config"),
        (["data.source=runs/exprot"], "error: runs/exprot: no such file or folder (did you mean runs/export?)"),
        (["data.source=runs/export", "model.path=runs/tiny-modle"], "error: model.path 'runs/tiny-modle': no such"),
    ],
)
def test_a_missing_dataset_or_model_is_said_before_torch(tmp_path: Path, sets: list[str], message: str) -> None:
    (tmp_path / "runs" / "export").mkdir(parents=True)
    (tmp_path / "runs" / "export" / "dataset_dict.json").write_text('{"splits": ["train"]}')
    args = ["dpo", "--config", str(REPO / "configs/train/dpo-tiny.yaml")]
    proc = train(*args, *[a for s in sets for a in ("--set", s)], cwd=tmp_path)
    assert proc.stdout.split() == ["exit", "2", "False"], proc.stderr
    assert proc.stderr.startswith(message), proc.stderr
    if "exprot" in message:  # and what writes it
        assert "prefkit annotate export" in proc.stderr and "prefkit data export" in proc.stderr


def test_the_tiny_models_answers_are_whole_characters(tiny_model_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from prefkit.train.tiny_model import broken_character_tokens

    tok = AutoTokenizer.from_pretrained(tiny_model_path)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    suppressed = set(model.generation_config.suppress_tokens)
    assert suppressed == set(broken_character_tokens(tok))
    assert 100 < len(suppressed) < len(tok) // 2 and not suppressed & set(tok.all_special_ids)
    assert tok.decode(tok("Xin chào các bạn").input_ids) == "Xin chào các bạn"  # any text still goes in
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "Xin chào"}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    texts = []
    for seed in range(8):
        torch.manual_seed(seed)
        out = model.generate(**prompt, do_sample=True, max_new_tokens=40, pad_token_id=tok.pad_token_id)
        texts.append(tok.decode(out[0][prompt["input_ids"].shape[1] :], skip_special_tokens=True))
    assert sum(len(t) for t in texts) > 100
    assert not [t for t in texts if "\ufffd" in t or any(ord(c) < 32 and c != "\n" for c in t)], texts


THREADS = """
import torch
from prefkit.core.threads import one_thread_for_small_models
before = torch.get_num_threads()
small = one_thread_for_small_models(torch.nn.Linear(64, 64))
after_small = torch.get_num_threads()
torch.set_num_threads(before)
big = one_thread_for_small_models(torch.nn.Embedding(20_000, 1024))
print(before, small, after_small, big, torch.get_num_threads())
"""


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core: torch starts with one thread anyway")
def test_a_small_model_on_the_cpu_gets_one_thread_unless_omp_num_threads_says(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    proc = subprocess.run([sys.executable, "-c", THREADS], capture_output=True, text=True, env=env, timeout=300)
    before, small, after_small, big, after_big = proc.stdout.split()
    assert int(before) > 1 and (small, after_small) == ("True", "1")
    assert big == "False" and after_big == before  # 20 M parameters and more keep torch's default
    chosen = subprocess.run(
        [sys.executable, "-c", THREADS], capture_output=True, text=True, env={**env, "OMP_NUM_THREADS": "2"}
    )
    assert chosen.stdout.split()[1:3] == ["False", "2"]  # the user's count wins


def test_a_chain_may_name_each_stages_dataset_instead() -> None:
    from prefkit.core.errors import ConfigError
    from prefkit.train.cli import check_config_given

    recipe = REPO / "configs" / "recipes" / "tldr-rlhf.yaml"  # sft.data.source, reward.data.source, …
    check_config_given("chain", recipe, [])  # Hub ids (HF_HUB_OFFLINE here): nothing to refuse
    with pytest.raises(ConfigError, match=r"data\.source is empty"):
        check_config_given("chain", recipe, ["sft.data.source=", "reward.data.source=", "ppo.data.source="])
