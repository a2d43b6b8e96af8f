"""Training chat templates: the loss on the assistant part needs `{% generation %}` markers.

Most released templates (Llama 3.x, Qwen 2.5/3, Gemma) have none. TRL's SFTTrainer swaps in its own
training variant when the model's template is byte-identical to one TRL knows (llama3, qwen2_5,
qwen3, gemma, gemma3, phi3, ...; `trl.chat_template_utils.get_training_chat_template`), and fails
otherwise. TRL ships no training variant of the Llama 3.1 / 3.2 templates, so those are patched
here the same way (assistant turns wrapped in generation markers); Qwen 3's is prefkit's too, since
TRL's renders a think block in every earlier answer, which the model's own template never does.
Whatever the source, the training template is checked to render exactly the text the model's own
template renders on one-turn sample conversations (else a config error) and on several-turn ones
(else SFT refuses rows with earlier turns, `check_multi_turn`); both results are recorded in the
run summary (`chat_template`).
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
# several turns (a row with history): some training variants (TRL's for Qwen 3.5 / 3.6, e.g.)
# render earlier assistant turns differently from the model's own template (e.g. an empty think block
# the model's template drops from the history); SFT refuses several-turn rows with those
_MULTI_TURN: list[list[dict[str, str]]] = [
    [
        {"role": "user", "content": "One?"},
        {"role": "assistant", "content": "1"},
        {"role": "user", "content": "Two?"},
        {"role": "assistant", "content": "2"},
    ],
    [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Một?"},
        {"role": "assistant", "content": "Một."},
        {"role": "user", "content": "Hai?"},
        {"role": "assistant", "content": "Hai."},
    ],
]


@dataclass
class TemplateChoice:
    """The template SFT trains with: None = the model's own; `source` says where it came from."""

    template: str | None
    source: str  # "model" (has markers), "trl" (TRL's training variant), "prefkit:<family>_training"
    same_multi_turn: bool = True  # renders the several-turn samples as the model's own template does
    same_text: bool = True  # renders the one-turn samples as the model's own template does
    compared: int = 0  # samples the model's own template could render (the others were not compared)

    def summary(self) -> dict[str, Any]:
        return {
            "training_template": self.source,
            "renders_same_text": self.same_text,
            "renders_same_text_multi_turn": self.same_multi_turn,
            "samples_compared": self.compared,
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


# Qwen 3: the assistant turn of the model's own template. Its last answer gets a (possibly empty) think
# block and earlier answers none; TRL's training variant gives every answer one, which the model's own
# template never renders in a conversation's history. prefkit's variant keeps the model's own rule and
# only wraps the answer in generation markers, so several-turn rows train on the model's own text.
_QWEN3_OPEN = "        {%- if loop.index0 > ns.last_query_index %}\n"
_QWEN3_TOOL_CALLS = "        {%- if message.tool_calls %}\n"
_QWEN3_CLOSE = "        {{- '<|im_end|>\\n' }}\n    {%- elif message.role == \"tool\" %}"
_QWEN3_TRAINING_HEAD = """\
        {%- set think = loop.index0 > ns.last_query_index and (loop.last or reasoning_content) %}
        {{- '<|im_start|>' + message.role + '\\n' }}
        {%- generation %}
        {%- if think %}
            {{- '<think>\\n' + reasoning_content.strip('\\n') + '\\n</think>\\n\\n' + content.lstrip('\\n') }}
        {%- else %}
            {{- content }}
        {%- endif %}
"""


def _qwen3_training(template: str) -> str | None:
    """The Qwen 3 template with its assistant turns in generation markers, rendering its own text."""
    if template != _trl_template("qwen3"):
        return None
    start, tools = template.index(_QWEN3_OPEN), template.index(_QWEN3_TOOL_CALLS)
    end = template.index(_QWEN3_CLOSE)
    tool_calls = template[tools:end]
    body = _QWEN3_TRAINING_HEAD + tool_calls + "        {{- '<|im_end|>\\n' }}\n        {%- endgeneration %}\n"
    return template[:start] + body + template[end + len("        {{- '<|im_end|>\\n' }}\n") :]


def _prefkit_training_template(template: str) -> tuple[str, str] | None:
    for family in ("llama3_1", "llama3_2"):
        if template == _trl_template(family) and _LLAMA31_LINE in template:
            return template.replace(_LLAMA31_LINE, _LLAMA31_TRAINING), family
    qwen3 = _qwen3_training(template)
    if qwen3 is not None:
        return qwen3, "qwen3"
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

    def same(samples: list[list[dict[str, str]]]) -> bool:
        ok = True
        for messages in samples:
            want = _renders(tokenizer, own, messages)
            if want is not None:  # a sample the model's template refuses (e.g. Gemma and a system turn) is skipped
                choice.compared += 1
                ok = ok and _renders(tokenizer, choice.template, messages) == want
        return ok

    choice.same_text = same(_SAMPLES)
    if not choice.same_text:
        raise ConfigError(
            f"assistant_only_loss: the training template ({choice.source}) does not render the model's own text"
        )
    choice.same_multi_turn = same(_MULTI_TURN)
    return choice


def check_multi_turn(choice: TemplateChoice, conversations: list[list[dict[str, str]]], split: str) -> None:
    """Refuse several-turn rows when the training template renders earlier turns differently from the
    model's own template: the model would be trained on a text it never sees."""
    if choice.same_multi_turn:
        return
    for i, messages in enumerate(conversations):
        if sum(m["role"] == "assistant" for m in messages) > 1:
            raise ConfigError(
                f"assistant_only_loss: {split} row {i} has earlier turns, and the training template ({choice.source}) "
                "renders earlier assistant turns differently from the model's own template, so the model would "
                "learn from a text it never sees; train on one-turn rows, or set assistant_only_loss: false "
                "(the model's own template, loss on the whole conversation)"
            )
