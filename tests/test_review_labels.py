"""A label from the page to the shadow's side, and the rules for notes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shadowproxy.review_labels import LabelError, parse_label, verdict_for


def test_choices_mean_the_same_whichever_side_was_shown_first() -> None:
    assert (verdict_for("1", True), verdict_for("2", True)) == ("better", "worse")
    assert (verdict_for("1", False), verdict_for("2", False)) == ("worse", "better")
    assert verdict_for("tie", True) == verdict_for("tie", False) == "equivalent"
    assert verdict_for("skip", True) is None


@given(st.text(max_size=300))
def test_a_note_is_stored_as_written_or_refused_with_a_reason(note: str) -> None:
    try:
        label = parse_label({"choice": "1", "note": note})
    except LabelError as exc:
        assert "note" in str(exc)
        return
    stored = label.note or ""
    assert stored == note.replace("\r\n", "\n").replace("\r", "\n").strip()
    stored.encode("utf-8")  # storable in PostgreSQL


@pytest.mark.parametrize("body", [None, [], {"choice": "3"}, {"choice": 1},
                                  {"choice": "1", "note": 5}])
def test_malformed_labels_are_refused(body: object) -> None:
    with pytest.raises(LabelError):
        parse_label(body)
