"""PPO's one copy of the weights: the policy, reference and critic as LoRA adapters on one base, and
the forward pass that gives per-token log-probs (or values) under any of them.

`model.path` is the frozen base (4-bit under QLoRA); LoRA adapters sit on it: `default` for the
policy and `value` for the critic (plus a linear value head on the critic's last hidden state).
Started from a previous stage's adapter (`model.adapter`, e.g. SFT's), the policy *is* that adapter,
trained further, and a frozen copy of it (`ref`) is the reference: the SFT model. Otherwise the
policy is a new adapter and the reference is the base with the adapters disabled. Either way the
per-token KL penalty costs no second model.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import nn

POLICY = "default"  # peft's default name, so the saved policy adapter is a plain adapter folder
VALUE = "value"
REF = "ref"  # a frozen copy of `model.adapter` when the run continues one: the KL reference

LOGIT_CHUNK_TOKENS = 1024  # real tokens per vocabulary projection: 1024 × 128,256 × 4 B = 0.5 GB of fp32 logits


class ValueHead(nn.Module):
    """Hidden state -> scalar value, in float32 whatever the base dtype."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.linear = nn.Linear(hidden_size, 1)
        nn.init.normal_(self.linear.weight, std=1.0 / math.sqrt(hidden_size + 1))
        nn.init.zeros_(self.linear.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.linear(hidden.float()).squeeze(-1)


def _chunk_logprobs(head: nn.Module, hidden: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    from trl.trainer.utils import selective_log_softmax

    return selective_log_softmax(head(hidden).float() / temperature, labels)


def token_logprobs(
    head: nn.Module,
    hidden: torch.Tensor,
    labels: torch.Tensor,
    mask: torch.Tensor,
    temperature: float = 1.0,
    *,
    with_entropy: bool = False,
    chunk_tokens: int = LOGIT_CHUNK_TOKENS,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-token `log softmax(head(hidden) / T)[label]` (float32, 0 where `mask` is 0), and the entropy
    when asked, without materialising `rows × length × vocab` logits: only the real tokens are projected,
    `chunk_tokens` at a time. With gradients on, each chunk is checkpointed, so backward recomputes its
    logits instead of keeping them: at most one chunk of fp32 logits exists at any moment."""
    keep = mask.bool()
    flat_h, flat_y = hidden[keep], labels[keep]
    lps, ents = [], []
    for i in range(0, flat_h.shape[0], chunk_tokens):
        h, y = flat_h[i : i + chunk_tokens], flat_y[i : i + chunk_tokens]
        if torch.is_grad_enabled():
            from torch.utils.checkpoint import checkpoint

            lps.append(checkpoint(_chunk_logprobs, head, h, y, temperature, use_reentrant=False))
            continue
        from trl.trainer.utils import entropy_from_logits, selective_log_softmax

        logits = head(h).float() / temperature
        lps.append(selective_log_softmax(logits, y))
        if with_entropy:
            ents.append(entropy_from_logits(logits))
        del logits
    zeros = torch.zeros(labels.shape, dtype=torch.float32, device=hidden.device)
    logprobs = zeros.masked_scatter(keep, torch.cat(lps)) if lps else zeros
    entropy = (zeros.masked_scatter(keep, torch.cat(ents)) if ents else zeros.clone()) if with_entropy else None
    return logprobs, entropy


def build_policy_and_value(cfg: Any) -> tuple[Any, str | None, ValueHead]:
    """(the PeftModel with the POLICY and VALUE adapters, and REF when continuing `model.adapter`;
    the reference adapter's name or None for the adapter-less base; the value head)."""
    from peft import get_peft_model
    from trl.trainer.utils import disable_dropout_in_model

    from prefkit.train.models import continues_adapter, load_policy, peft_config

    policy_lora, value_lora = peft_config(cfg), peft_config(cfg)  # one config object per adapter
    assert policy_lora is not None and value_lora is not None  # PpoConfig refuses lora.enabled: false
    model: Any  # a PEFT-wrapped model: the adapters below are its
    if continues_adapter(cfg):
        # started from a previous stage's adapter (e.g. SFT): the policy keeps training exactly that
        # adapter over the bare (4-bit with QLoRA) base, and a frozen copy of it is the KL reference:
        # the SFT model itself, never a merge into 4-bit
        model = load_policy(cfg, adapter_name=POLICY)
        model.load_adapter(cfg.model.adapter, adapter_name=REF, is_trainable=False)
        ref_adapter: str | None = REF
    else:
        model = get_peft_model(load_policy(cfg), policy_lora, adapter_name=POLICY)
        ref_adapter = None  # the reference is the base with the adapters disabled
    model.add_adapter(VALUE, value_lora)
    model.set_requires_grad([POLICY, VALUE], True)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    disable_dropout_in_model(model)  # rollout and training must see the same policy
    return model, ref_adapter, ValueHead(model.config.hidden_size)


def forward(
    peft_model: Any,
    value_head: nn.Module,
    query: torch.Tensor,
    query_mask: torch.Tensor,
    response: torch.Tensor,
    mask: torch.Tensor,
    adapter: str | None,
    *,
    temperature: float,
    autocast: Callable[[], AbstractContextManager[Any]] = nullcontext,
    entropy: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-token (log-probs, entropy or None) under `adapter` (POLICY, REF, or None: the adapters
    disabled) or (values, None) for VALUE, for the rows given.

    The decoder runs once; the vocabulary projection runs only on the real response tokens, a few
    thousand at a time (`token_logprobs`), so full `rows × length × vocab` logits never exist."""
    ids = torch.cat([query, response], dim=1)
    attn = torch.cat([query_mask, mask.long()], dim=1)
    pos = (attn.cumsum(-1) - 1).clamp(min=0)  # left padding: positions count real tokens only
    P = query.shape[1]
    base = peft_model.get_base_model()
    if adapter is not None:
        peft_model.set_adapter(adapter, inference_mode=adapter == REF)  # REF stays frozen
    with autocast(), peft_model.disable_adapter() if adapter is None else nullcontext():
        hidden = base.get_decoder()(input_ids=ids, attention_mask=attn, position_ids=pos).last_hidden_state
        hidden = hidden[:, P - 1 : -1]  # the state that predicts each response token
        if adapter == VALUE:
            return value_head(hidden), None
        return token_logprobs(base.get_output_embeddings(), hidden, response, mask, temperature, with_entropy=entropy)
