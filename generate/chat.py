"""A prompt as the model expects to read it: its chat template, or a plain format when it has none.

A multi-turn prompt is given whole: the earlier turns (`Prompt.history`) go into the template as
they are, so the model answers the last user turn knowing the conversation before it.

The system prompt is the prompt's own (`Prompt.system`) when it has one, else the run's default.
Templates that refuse a system role (some raise on it) get the system text folded into the user
turn instead of failing the run.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from prefkit.data.schema import Prompt

# Alpaca's instruction format: base models without a template have mostly seen this one.
PLAIN_FORMAT = "{system}### Instruction:\n{question}\n\n### Response:\n"


def _plain(tokenizer: Any, question: str, system: str | None, history: tuple[tuple[str, str], ...] = ()) -> str:
    bos = tokenizer.bos_token or ""
    head = f"{system.strip()}\n\n" if system else ""
    for role, content in history:  # earlier turns in the same instruction/response layout
        head += (
            f"### Instruction:\n{content.strip()}\n\n" if role == "user" else f"### Response:\n{content.strip()}\n\n"
        )
    return bos + PLAIN_FORMAT.format(system=head, question=question.strip())


def asked_prompt(prompt: Prompt, default_system: str | None) -> Prompt:
    """`prompt` as the model is asked it: its own system prompt, else the run's default (same id).

    Format this one, and store it in what the answers produce, so rows record the system prompt
    their answers were generated under.
    """
    return dataclasses.replace(prompt, system=prompt.system or default_system)


def format_prompt(
    tokenizer: Any, question: str, system: str | None = None, history: tuple[tuple[str, str], ...] = ()
) -> str:
    """The text to generate from (special tokens included; tokenize it without adding more):
    the answer to `question`, the last user turn, after the earlier turns `history`."""
    from jinja2 import TemplateError

    system = system if system and system.strip() else None
    if not getattr(tokenizer, "chat_template", None):
        return _plain(tokenizer, question, system, history)
    messages = [*({"role": r, "content": c} for r, c in history), {"role": "user", "content": question}]
    if system:
        try:
            return tokenizer.apply_chat_template(
                [{"role": "system", "content": system}, *messages], tokenize=False, add_generation_prompt=True
            )
        except TemplateError:
            first = messages[0]
            messages[0] = {"role": "user", "content": f"{system}\n\n{first['content']}"}
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
