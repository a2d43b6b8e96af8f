"""A tiny random-weight Llama-style model and a locally trained tokenizer, for CPU tests and demos.

Nothing may be downloaded from a hub here, so tests (and `make demo`) build their own model: a
byte-level BPE trained with `tokenizers` on the bundled sample (or given texts), wrapped as a
transformers fast tokenizer with a chat template, and a `LlamaForCausalLM` with random weights.
Both are written with `save_pretrained`, so every loader sees an ordinary model folder.

The model's weights are random, so its answers are random tokens. Its generation config
suppresses the tokens that are not whole characters on their own (the byte-level BPE's lone
bytes of a multi-byte UTF-8 character, and control bytes): sampled one after another they decode
to U+FFFD and look like an encoding bug, where the answers are meant to look like what they are,
random syllables ("ăm đ ược tố. Đài sá bước"). Feeding any text in still works (every byte has
a token); only generation leaves them out.

The chat template wraps assistant content in `{% generation %}` markers (TRL's
`assistant_only_loss` needs them) and ends each turn with `<|end|>`, which is also the EOS token,
so a model that learns to stop emits it and generation halts at the end of its turn.

`family` gives the tokenizer a real model family's chat template instead (the template text TRL
ships in `trl/chat_templates/`, nothing downloaded) and that family's special tokens, BOS/EOS/pad:
`llama3`, `llama3_1`, `llama3_2`, `qwen2_5`, `qwen3`, `gemma`, `gemma3` (see `FAMILIES`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from prefkit.data.demo import sample_path

SPECIAL_TOKENS = ["<pad>", "<unk>", "<s>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>"]

_LLAMA3 = (
    [
        "<|begin_of_text|>",
        "<|start_header_id|>",
        "<|end_header_id|>",
        "<|eot_id|>",
        "<|finetune_right_pad_id|>",
        "<|python_tag|>",
        "<unk>",
    ],
    "<|begin_of_text|>",
    "<|eot_id|>",
    "<|finetune_right_pad_id|>",
)
_QWEN = (
    ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>", "<tool_call>", "</tool_call>", "<unk>"],
    None,
    "<|im_end|>",
    "<|endoftext|>",
)
_GEMMA = (["<pad>", "<eos>", "<bos>", "<start_of_turn>", "<end_of_turn>", "<unk>"], "<bos>", "<end_of_turn>", "<pad>")
# family -> (TRL template file, special tokens, bos, eos, pad)
FAMILIES: dict[str, tuple[str, list[str], str | None, str, str]] = {
    "llama3": ("llama3", *_LLAMA3),
    "llama3_1": ("llama3_1", *_LLAMA3),
    "llama3_2": ("llama3_2", *_LLAMA3),
    "qwen2_5": ("qwen2_5", *_QWEN),
    "qwen3": ("qwen3", *_QWEN),
    "gemma": ("gemma", *_GEMMA),
    "gemma3": ("gemma3", *_GEMMA),
}


def family_template(family: str) -> str:
    """The chat template text of a model family, as TRL ships it (`trl/chat_templates/<name>.jinja`)."""
    import trl

    return (Path(trl.__file__).parent / "chat_templates" / f"{FAMILIES[family][0]}.jinja").read_text()


CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'assistant' -%}"
    "{{ '<|assistant|>\\n' }}{% generation %}{{ message['content'] + '<|end|>' }}{% endgeneration %}{{ '\\n' }}"
    "{%- else -%}"
    "{{ '<|' + message['role'] + '|>\\n' + message['content'] + '<|end|>\\n' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|assistant|>\\n' }}{%- endif -%}"
)

# Used when no texts are given and the bundled sample is missing: enough Vietnamese and English
# for the BPE to learn common syllables (diacritics included).
_FALLBACK_TEXTS = [
    "Xin chào! Tôi có thể giúp gì cho bạn hôm nay?",
    "Hãy giải thích quang hợp là gì một cách đơn giản.",
    "Quang hợp là quá trình cây xanh dùng ánh sáng mặt trời để tạo ra chất dinh dưỡng.",
    "Viết một đoạn văn ngắn về mùa thu ở Hà Nội.",
    "Mùa thu Hà Nội có gió heo may, lá vàng rơi và hương hoa sữa nồng nàn.",
    "Làm thế nào để nấu phở bò ngon tại nhà?",
    "Ninh xương bò trong nhiều giờ với quế, hồi, gừng nướng và hành nướng.",
    "Tính tổng các số từ 1 đến 100. Đáp án là 5050.",
    "Write a Python function that reverses a string: def reverse(s): return s[::-1]",
    "The quick brown fox jumps over the lazy dog. Explain your answer step by step.",
    "Cảm ơn bạn rất nhiều. Chúc bạn một ngày tốt lành!",
]


def _default_texts() -> list[str]:
    sample = sample_path()
    texts: list[str] = []
    if sample.exists():
        for line in sample.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                texts.extend(str(v) for k, v in row.items() if k in ("question", "chosen", "rejected") and v)
    return texts + _FALLBACK_TEXTS


def build_tokenizer(
    texts: Iterable[str] | None = None, vocab_size: int = 512, max_length: int = 512, family: str | None = None
):
    """A byte-level BPE fast tokenizer with pad/eos/unk tokens and the chat template above (or `family`'s)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials, bos, eos, pad = FAMILIES[family][1:] if family else (SPECIAL_TOKENS, "<s>", "<|end|>", "<pad>")
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(specials),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    corpus = list(texts) if texts is not None else _default_texts()
    tok.train_from_iterator(corpus, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=bos,
        eos_token=eos,
        pad_token=pad,
        unk_token="<unk>",
        model_max_length=max_length,
    )
    tokenizer.chat_template = family_template(family) if family else CHAT_TEMPLATE
    return tokenizer


def broken_character_tokens(tokenizer) -> list[int]:
    """The ids of tokens that are not whole printable characters on their own: a lone byte of a
    multi-byte UTF-8 character (it decodes to U+FFFD) or a control character other than a
    newline. Special tokens are kept."""
    special = set(tokenizer.all_special_ids)
    bad = []
    for i in range(len(tokenizer)):
        if i in special:
            continue
        text = tokenizer.decode([i])
        if "\ufffd" in text or any(ord(c) < 32 and c != "\n" for c in text) or "\x7f" in text:
            bad.append(i)
    return bad


def build_tiny_model(
    out_dir: str | Path,
    *,
    texts: Iterable[str] | None = None,
    vocab_size: int = 512,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    max_length: int = 512,
    seed: int = 0,
    intermediate_size: int | None = None,
    num_kv_heads: int | None = None,
    family: str | None = None,
) -> Path:
    """Build and `save_pretrained` a random tiny Llama + tokenizer into `out_dir`; return the path.

    `intermediate_size` defaults to 2 x hidden, `num_kv_heads` to half the heads (grouped-query)."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(texts, vocab_size=vocab_size, max_length=max_length, family=family)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size or hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads or max(1, num_heads // 2),
        max_position_embeddings=max_length,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        suppress_tokens=broken_character_tokens(tokenizer),
    )
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
