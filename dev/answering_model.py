"""A real transformer that always gives the same answer, for testing code that reads a model's
words (the AI judge's parsing and its both-orders logic) on a real engine (not used by prefkit
itself, not in the wheel).

`answering_model(src, dst, answer)` copies the tiny Llama folder `src` (`prefkit.train.tiny_model`)
to `dst` and sets its weights so that, greedy, it continues any chat prompt with `answer` and then
its end-of-turn token: every layer's output projections (attention `o_proj`, MLP `down_proj`) are
zero, so the last position's hidden state is its token's embedding alone, and the embedding and
`lm_head` are set to a chain — the generation prompt's last token -> the answer's first token ->
… -> end of turn. It is an ordinary model folder: the HF engine, `transformers serve` and vLLM
load it as they load any Llama.
"""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path


def answering_model(src: str | Path, dst: str | Path, answer: str) -> Path:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dst = Path(shutil.copytree(src, dst))
    tokenizer = AutoTokenizer.from_pretrained(dst)
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "?"}], tokenize=False, add_generation_prompt=True
    )
    start = tokenizer(prompt, add_special_tokens=False)["input_ids"][-1]
    chain = [start, *tokenizer(answer, add_special_tokens=False)["input_ids"], tokenizer.eos_token_id]
    model = AutoModelForCausalLM.from_pretrained(dst, dtype=torch.float32)
    if len(set(chain)) != len(chain) or len(chain) - 1 > model.config.hidden_size:
        raise ValueError(f"answer {answer!r} needs distinct tokens (and fewer than the hidden size): {chain}")
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        embed, head = model.model.embed_tokens.weight, model.lm_head.weight
        head.zero_()
        model.model.norm.weight.fill_(1.0)
        for k, (token, following) in enumerate(itertools.pairwise(chain)):
            embed[token] = 0.0
            embed[token, k] = 1.0
            head[following, k] = 10.0  # after the norm the state is sqrt(hidden) * e_k: a logit of ~80
    model.save_pretrained(dst)
    return dst
