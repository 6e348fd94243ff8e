"""The spool keeps pairs across crashes, in order, within its size bound."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from shadowproxy.store.spool import Spool
from tests.fakes.database import make_pair


def test_pairs_come_back_in_order_after_reopening(tmp_path: Path) -> None:
    pairs = [make_pair(tag=f"t{i}") for i in range(25)]
    spool = Spool(tmp_path, max_bytes=10_000_000, segment_bytes=4_000)
    for start in range(0, 25, 5):
        assert spool.append(pairs[start : start + 5]) == 5

    reopened = Spool(tmp_path, max_bytes=10_000_000)
    assert reopened.read_all() == pairs
    assert len(list(tmp_path.iterdir())) > 1  # it rotated segments


def test_torn_last_line_is_skipped(tmp_path: Path) -> None:
    pairs = [make_pair() for _ in range(3)]
    Spool(tmp_path, max_bytes=10_000_000).append(pairs)
    (segment,) = tmp_path.iterdir()
    data = segment.read_bytes()
    segment.write_bytes(data[: len(data) - 40])  # the crash cut the last append short

    reopened = Spool(tmp_path, max_bytes=10_000_000)
    assert reopened.read_all() == pairs[:2]
    assert reopened.torn == 1
    # New appends after a crash never glue onto the torn line.
    later = make_pair()
    reopened.append([later])
    assert Spool(tmp_path, max_bytes=10_000_000).read_all() == [*pairs[:2], later]


def test_full_spool_drops_and_counts(tmp_path: Path) -> None:
    one = len(make_pair().to_json().__repr__())  # rough size of a line
    spool = Spool(tmp_path, max_bytes=3 * one)
    kept = spool.append([make_pair() for _ in range(10)])
    assert 0 < kept < 10
    assert spool.dropped == 10 - kept
    assert spool.size_bytes <= 3 * one
    assert len(spool.read_all()) == kept


def test_released_segments_free_space_and_keep_the_rest(tmp_path: Path) -> None:
    pairs = [make_pair() for _ in range(6)]
    spool = Spool(tmp_path, max_bytes=10_000_000)
    spool.append(pairs[:3])
    oldest = spool.oldest()
    assert oldest is not None
    assert oldest.records == pairs[:3]
    spool.append(pairs[3:])  # goes to a new segment: the oldest one is sealed
    spool.release(oldest)
    assert spool.read_all() == pairs[3:]
    spool.truncate()
    assert spool.is_empty()
    assert spool.size_bytes == 0


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=6), min_size=1, max_size=8))
def test_any_sequence_of_appends_reads_back_in_order(sizes: list[int]) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        spool = Spool(Path(directory), max_bytes=10_000_000, segment_bytes=3_000)
        appended = []
        for size in sizes:
            batch = [make_pair() for _ in range(size)]
            spool.append(batch)
            appended.extend(batch)
        assert Spool(Path(directory), max_bytes=10_000_000).read_all() == appended
