"""A prompt as the model expects to read it: its chat template, or a plain format when it has none.

The system prompt is the prompt's own (`Prompt.system`) when it has one, else the run's default.
Templates that refuse a system role (some raise on it) get the system text folded into the user
turn instead of failing the run.
"""

from __future__ import annotations

from typing import Any

from data.schema import Prompt

# Alpaca's instruction format: base models without a template have mostly seen this one.
PLAIN_FORMAT = "{system}### Instruction:\n{question}\n\n### Response:\n"


def _plain(tokenizer: Any, question: str, system: str | None) -> str:
    bos = tokenizer.bos_token or ""
    head = f"{system.strip()}\n\n" if system else ""
    return bos + PLAIN_FORMAT.format(system=head, question=question.strip())


def format_prompt(tokenizer: Any, question: str, system: str | None = None) -> str:
    """The text to generate from (special tokens included; tokenize it without adding more)."""
    from jinja2 import TemplateError

    system = system if system and system.strip() else None
    if not getattr(tokenizer, "chat_template", None):
        return _plain(tokenizer, question, system)
    messages = [{"role": "user", "content": question}]
    if system:
        try:
            return tokenizer.apply_chat_template(
                [{"role": "system", "content": system}, *messages], tokenize=False, add_generation_prompt=True
            )
        except TemplateError:
            messages = [{"role": "user", "content": f"{system}\n\n{question}"}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


class ChatFormatter:
    """Formats prompts for one tokenizer with a default system prompt."""

    def __init__(self, tokenizer: Any, system_prompt: str | None = None) -> None:
        self.tokenizer = tokenizer
        self.system_prompt = system_prompt

    def __call__(self, prompt: Prompt) -> str:
        return format_prompt(self.tokenizer, prompt.question, prompt.system or self.system_prompt)
