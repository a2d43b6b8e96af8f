"""Training chat templates: the loss on the assistant part needs `{% generation %}` markers.

Most released templates (Llama 3.x, Qwen 2.5/3, Gemma) have none. TRL's SFTTrainer swaps in its own
training variant when the model's template is byte-identical to one TRL knows (llama3, qwen2_5,
qwen3, gemma, gemma3, phi3, ...; `trl.chat_template_utils.get_training_chat_template`), and fails
otherwise. TRL ships no training variant of the Llama 3.1 / 3.2 templates, so those are patched
here the same way (assistant turns wrapped in generation markers). Whatever the source, the
training template is checked to render exactly the text the model's own template renders on
sample conversations, and the choice is recorded in the run summary (`chat_template`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prefkit.core.errors import ConfigError

# Llama 3.1 / 3.2: the one line that renders a plain (non-tool) message, and its training form.
_LLAMA31_LINE = (
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
    "+ message['content'] | trim + '<|eot_id|>' }}"
)
_LLAMA31_TRAINING = (
    "{%- if message['role'] == 'assistant' %}"
    "{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
    "{%- generation %}{{- message['content'] | trim + '<|eot_id|>' }}{%- endgeneration %}"
    "{%- else %}" + _LLAMA31_LINE + "{%- endif %}"
)

# the conversations prefkit trains on: one turn, with and without a system message
_SAMPLES: list[list[dict[str, str]]] = [
    [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}],
    [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Xin chào?"},
        {"role": "assistant", "content": "Chào bạn."},
    ],
]
# several turns: TRL's Qwen3 training variant renders the thinking block of earlier assistant turns
# too (prefix-preserving), which the model's own template drops; recorded, not refused
_MULTI_TURN = [
    {"role": "user", "content": "One?"},
    {"role": "assistant", "content": "1"},
    {"role": "user", "content": "Two?"},
    {"role": "assistant", "content": "2"},
]


@dataclass
class TemplateChoice:
    """The template SFT trains with: None = the model's own; `source` says where it came from."""

    template: str | None
    source: str  # "model" (has markers), "trl" (TRL's training variant), "prefkit:<family>_training"
    same_multi_turn: bool = True  # renders several-turn conversations the same too

    def summary(self) -> dict[str, Any]:
        return {
            "training_template": self.source,
            "renders_same_text": True,
            "renders_same_text_multi_turn": self.same_multi_turn,
        }


def has_generation_markers(template: str | dict[str, str] | None) -> bool:
    from trl.chat_template_utils import has_generation_markers as trl_has

    if not template:
        return False
    return trl_has(template)


def _trl_template(name: str) -> str:
    from pathlib import Path

    import trl

    return (Path(trl.__file__).parent / "chat_templates" / f"{name}.jinja").read_text()


def _prefkit_training_template(template: str) -> tuple[str, str] | None:
    for family in ("llama3_1", "llama3_2"):
        if template == _trl_template(family) and _LLAMA31_LINE in template:
            return template.replace(_LLAMA31_LINE, _LLAMA31_TRAINING), family
    return None


def _renders(tokenizer: Any, template: str | None, messages: list[dict[str, str]]) -> str | None:
    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, chat_template=template)
    except Exception:
        return None


def training_chat_template(tokenizer: Any) -> TemplateChoice:
    """The chat template to train with the loss on assistant turns only (see the module docstring)."""
    own = tokenizer.chat_template
    if isinstance(own, dict):
        own = own.get("default")
    if not own:
        raise ConfigError("assistant_only_loss: the tokenizer has no chat template; set assistant_only_loss: false")
    if has_generation_markers(own):
        return TemplateChoice(None, "model")
    patched = _prefkit_training_template(own)
    if patched is not None:
        choice = TemplateChoice(patched[0], f"prefkit:{patched[1]}_training")
    else:
        from trl.chat_template_utils import get_training_chat_template

        try:
            choice = TemplateChoice(get_training_chat_template(tokenizer), "trl")
        except ValueError:
            raise ConfigError(
                "assistant_only_loss: the model's chat template has no {% generation %} markers and no training "
                "variant is known for it (TRL's or prefkit's); set assistant_only_loss: false, or give the "
                "tokenizer a template with markers"
            ) from None
        if choice.template is None:
            return TemplateChoice(None, "model")
    for messages in _SAMPLES:
        want = _renders(tokenizer, own, messages)
        if want is not None and _renders(tokenizer, choice.template, messages) != want:
            raise ConfigError(
                f"assistant_only_loss: the training template ({choice.source}) does not render the model's own text"
            )
    choice.same_multi_turn = _renders(tokenizer, own, _MULTI_TURN) == _renders(tokenizer, choice.template, _MULTI_TURN)
    return choice
