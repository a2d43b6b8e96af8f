"""The preference fixtures the learning tests train on cannot be learned from length: in every pair
chosen and rejected have the same number of tokens (and words, and whole chat-template
conversations), and `prefkit data audit` raises no length or style flag on them; on the SFT rows,
whose chosen answer is longer, both checks fail, so they can."""

from __future__ import annotations

import pytest

from prefkit.data.audit import audit_rows, audit_source
from prefkit.data.audit_config import AuditConfig
from prefkit.data.readers import read_preferences
from prefkit.data.schema import Strength


def _conversation_len(tok, question: str, answer: str) -> int:
    messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return len(tok.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"])


@pytest.mark.parametrize("seed", range(5))
def test_marker_rows_have_equal_lengths_in_tokens_words_and_conversations(make_marker_rows, tiny_tokenizer, seed):
    rows = make_marker_rows(64, seed=seed)  # the fixture itself asserts equal token counts
    assert len(rows) == 64 and {r.strength for r in rows} == set(Strength)
    n = lambda t: len(tiny_tokenizer(t, add_special_tokens=False)["input_ids"])  # noqa: E731
    for r in rows:
        assert r.chosen != r.rejected
        assert n(r.chosen) == n(r.rejected) and len(r.chosen.split()) == len(r.rejected.split())
        # what the models read: the whole conversation, chat template included
        assert _conversation_len(tiny_tokenizer, r.question, r.chosen) == _conversation_len(
            tiny_tokenizer, r.question, r.rejected
        )


def test_the_audit_finds_no_length_or_style_signal_in_marker_dataset(marker_dataset, tiny_model_path):
    for cfg in (AuditConfig(), AuditConfig(tokenizer=str(tiny_model_path))):  # words, then the model's tokens
        report = audit_source(marker_dataset, cfg)
        style = report["style"]["all"]
        assert style["pairs"] == 160 and style["equal_length"] == 160 and style["chosen_longer_share"] is None
        assert not {"length_confound", "style_predicts_preference"} & {f["name"] for f in report["red_flags"]}


def test_the_checks_fail_on_rows_whose_chosen_answer_is_longer(make_sft_rows, assert_balanced):
    """The two checks above can fail: the SFT rows (chosen = rejected + an ending) are flagged."""
    rows = make_sft_rows(40)
    with pytest.raises(AssertionError, match="row 0: chosen has"):
        assert_balanced(rows)
    report = audit_rows({"train": rows})
    assert report["style"]["all"]["chosen_longer_share"] == 1.0
    assert "length_confound" in {f["name"] for f in report["red_flags"]}


def test_marker_dataset_splits_by_prompt_as_written(marker_dataset):
    train, test = read_preferences(marker_dataset, "train"), read_preferences(marker_dataset, "test")
    assert len(train) == 120 and len(test) == 40
    assert not {r.question for r in train} & {r.question for r in test}
