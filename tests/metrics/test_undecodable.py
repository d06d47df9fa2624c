"""Generated texts with bytes that do not decode (U+FFFD) by hand."""

from __future__ import annotations

import pytest

from transfer_neurons.metrics.langid import undecodable


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("\ufffd\ufffd", True),  # only replacement characters
        (" \ufffd \n", True),
        ("ab\ufffdcd", True),  # inside the text
        ("日本語\ufffd", False),  # a trailing character cut off at the token limit
        ("日本語\ufffd\ufffd ", False),
        ("日本語", False),
        ("", False),
        ("...", False),
    ],
)
def test_undecodable_by_hand(text, expected):
    assert undecodable(text) is expected
