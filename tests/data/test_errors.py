"""`prefkit.core.errors.first_line`: one line of an exception's text for one-line user errors."""

from __future__ import annotations

from prefkit.core.errors import first_line


def test_first_line_of_long_text_or_the_type_name() -> None:
    assert first_line(ValueError("\n  first problem\nsecond\nthird")) == "first problem"
    assert first_line(TimeoutError()) == "TimeoutError"
    assert first_line(OSError("   ")) == "OSError"
