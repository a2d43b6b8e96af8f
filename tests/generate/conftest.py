"""Fixtures of the generate room's tests: prompt files, engines and variants of the tiny model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

QUESTIONS = [
    "Xin chào, bạn khỏe không?",
    "Hãy giải thích quang hợp là gì.",
    "Viết một đoạn văn ngắn về mùa thu ở Hà Nội.",
    "Làm thế nào để nấu phở bò ngon tại nhà?",
    "Tính tổng các số từ 1 đến 100.",
    "Kể tên ba con sông lớn ở Việt Nam.",
    "Vì sao bầu trời có màu xanh?",
    "Viết một hàm Python đảo ngược chuỗi.",
    "Gợi ý một lịch trình du lịch Đà Lạt hai ngày.",
    "Thế nào là một bữa sáng lành mạnh?",
    "Giải thích sự khác nhau giữa thời tiết và khí hậu.",
    "Làm sao để học tiếng Anh hiệu quả?",
]


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """The tiny model's matrices are too small to share out: on a busy 2-core machine one thread
    is ~10x faster than two fighting over the cores (and leaves the other core to the rest)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def write_prompts(path: Path, questions: list[str]) -> Path:
    """A prompt/response JSONL file (the Vi-Alpaca prompts layout)."""
    path.write_text(
        "".join(json.dumps({"prompt": q, "response": "…"}, ensure_ascii=False) + "\n" for q in questions),
        encoding="utf-8",
    )
    return path


@pytest.fixture
def questions() -> list[str]:
    return list(QUESTIONS)


@pytest.fixture
def make_prompts():
    """`make_prompts(path, questions)` writes a prompt file (tests cannot import conftest)."""
    return write_prompts


@pytest.fixture
def prompts_file(tmp_path) -> Path:
    return write_prompts(tmp_path / "prompts.jsonl", QUESTIONS[:4])


@pytest.fixture(scope="session")
def hf_engine(tiny_model_path):
    """One CPU engine on the tiny model for the session (it holds no state between calls)."""
    from prefkit.generate.engines.hf import HFEngine

    return HFEngine(tiny_model_path, batch_size=8, device="cpu", dtype="float32")


def model_copy(src: Path, dst: Path, **generation: object) -> Path:
    """A copy of the tiny model whose generation config has `generation` set (e.g. eos_token_id)."""
    from transformers import GenerationConfig

    shutil.copytree(src, dst)
    config = GenerationConfig.from_pretrained(dst)
    for key, value in generation.items():
        setattr(config, key, value)
    config.save_pretrained(dst)
    return dst


@pytest.fixture(scope="session")
def tiny_model_path(tiny_model_factory, tmp_path_factory) -> Path:
    """The tiny model, here with `min_new_tokens=1`: a random model samples end-of-turn as its first
    token in about one draw of 300, which empties the answer and drops its pair. Which draws those
    are depends on the model's folder path (a draw's seed derives from its setting label, which
    names the model), so without this a test counting pairs fails on ~1 run in 40 (CI, stop 19)."""
    return model_copy(tiny_model_factory(), tmp_path_factory.mktemp("speaking") / "model", min_new_tokens=1)


@pytest.fixture(scope="session")
def stopping_model(tiny_model_factory, tmp_path_factory) -> Path:
    """A random model that ends its turn often: a sixth of the vocabulary counts as end of turn, so
    within a few tokens some samples stop and some run out of max_tokens."""
    return model_copy(
        tiny_model_factory(), tmp_path_factory.mktemp("stopping") / "model", eos_token_id=[3, *range(10, 512, 6)]
    )


@pytest.fixture(scope="session")
def mute_model(tiny_model_factory, tmp_path_factory) -> Path:
    """A random model whose every token ends the turn: every answer is empty."""
    return model_copy(tiny_model_factory(), tmp_path_factory.mktemp("mute") / "model", eos_token_id=list(range(512)))


@pytest.fixture(scope="session")
def lora_adapter(tiny_model_path, tmp_path_factory) -> Path:
    """A LoRA adapter with random (not zero) weights on the tiny model, so it changes the answers."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    model = get_peft_model(
        base, LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    )
    out = tmp_path_factory.mktemp("lora") / "adapter"
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def sampling_model(tiny_model_path, tmp_path_factory) -> Path:
    """A copy of the tiny model that samples by default (`do_sample`), as a served model should."""
    return model_copy(tiny_model_path, tmp_path_factory.mktemp("served") / "model", do_sample=True)
