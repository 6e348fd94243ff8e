"""Where pairs wait on disk while the database is away.

The spool is a directory of append-only segment files (``00000001.jsonl``, …), one JSON
line per :class:`PairRecord`. Appends go to the newest segment and are fsynced per
batch, so a pair the writer has spooled survives a crash; a crash mid-append leaves at
most one torn last line, which replay skips (and counts). Replay goes oldest segment
first and a segment is deleted only after all its pairs are in the database, so replay
is resumable and, because writes are idempotent by pair id, never stores a pair twice.

The directory is bounded by ``max_bytes``: past it, new pairs are dropped and counted
in :attr:`Spool.dropped` (never silently), because filling the disk would take the host
down with us.

All methods block on file I/O; the writer calls them through ``asyncio.to_thread``. A
lock makes them safe to call from several threads.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from shadowproxy.records import PairRecord

log = logging.getLogger(__name__)

SUFFIX = ".jsonl"


@dataclass(frozen=True, slots=True)
class Segment:
    """One sealed spool file and the pairs it holds, oldest first."""

    path: Path
    records: list[PairRecord]


class Spool:
    def __init__(
        self, directory: Path, *, max_bytes: int, segment_bytes: int = 4 * 1024 * 1024
    ) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.dropped = 0  # pairs refused because the spool was full
        self.torn = 0  # lines that did not parse on replay (a crash mid-append)
        self._lock = threading.Lock()
        directory.mkdir(parents=True, exist_ok=True)
        self._segments = sorted(directory.glob(f"*{SUFFIX}"))
        self._bytes = sum(p.stat().st_size for p in self._segments)
        # Never append to a segment found on disk: its last line may be torn.
        self._active: Path | None = None

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def is_empty(self) -> bool:
        with self._lock:
            return not self._segments

    def append(self, records: Sequence[PairRecord]) -> int:
        """Append and fsync; return how many were kept (the rest count as dropped)."""
        encoded = [line for line in map(self._encode, records) if line is not None]
        with self._lock:
            lines: list[bytes] = []
            size = self._bytes
            for line in encoded:
                if size + len(line) > self.max_bytes:
                    continue
                lines.append(line)
                size += len(line)
            if lines:
                try:
                    self._write(lines)
                except OSError as exc:
                    # A partial write may have left a torn line: never append after it.
                    self._active = None
                    log.error("spool write failed, %d pairs dropped: %s", len(lines), exc)
                    lines = []
                else:
                    self._bytes = size
            refused = len(records) - len(lines)
            self.dropped += refused
        if refused:
            log.error("spool (%d of %d bytes used) dropped %d pairs",
                      self._bytes, self.max_bytes, refused)
        return len(lines)

    @staticmethod
    def _encode(record: PairRecord) -> bytes | None:
        try:
            return json.dumps(record.to_json(), separators=(",", ":")).encode() + b"\n"
        except (TypeError, ValueError) as exc:
            log.error("pair %s cannot be spooled: %s", getattr(record, "id", "?"), exc)
            return None

    def _write(self, lines: list[bytes]) -> None:
        path = self._writable_segment()
        with path.open("ab") as fh:
            fh.write(b"".join(lines))
            fh.flush()
            os.fsync(fh.fileno())

    def _writable_segment(self) -> Path:
        if self._active is not None and self._active.stat().st_size < self.segment_bytes:
            return self._active
        number = int(self._segments[-1].stem) + 1 if self._segments else 1
        self._active = self.directory / f"{number:08d}{SUFFIX}"
        self._segments.append(self._active)
        self._sync_directory()
        return self._active

    def _sync_directory(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def oldest(self) -> Segment | None:
        """The oldest segment, sealed: later appends go to a new file."""
        with self._lock:
            if not self._segments:
                return None
            path = self._segments[0]
            if path == self._active:
                self._active = None
            return Segment(path, self._read(path))

    def release(self, segment: Segment) -> None:
        """Forget a segment whose pairs are all stored."""
        with self._lock:
            if segment.path in self._segments:
                self._bytes -= segment.path.stat().st_size
                segment.path.unlink()
                self._segments.remove(segment.path)

    def read_all(self) -> list[PairRecord]:
        """Every spooled pair, in the order it was appended."""
        with self._lock:
            return [record for path in self._segments for record in self._read(path)]

    def truncate(self) -> None:
        with self._lock:
            for path in self._segments:
                path.unlink(missing_ok=True)
            self._segments.clear()
            self._active = None
            self._bytes = 0

    def _read(self, path: Path) -> list[PairRecord]:
        records: list[PairRecord] = []
        for number, line in enumerate(path.read_bytes().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                records.append(PairRecord.from_json(json.loads(line)))
            except (ValueError, TypeError, KeyError) as exc:
                self.torn += 1
                log.warning("spool %s line %d unreadable, skipped: %s", path.name, number, exc)
        return records
