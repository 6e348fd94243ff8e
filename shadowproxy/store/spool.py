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

A bad disk (read-only, full, the directory gone) is survived, not obeyed: an append
that fails raises :class:`SpoolUnwritable` and leaves no segment name behind for a file
that does not exist; replay skips a segment that is missing or unreadable and goes on
with the next; a segment that cannot be deleted is forgotten (its pairs are stored;
replaying it after a restart is harmless). Sizes are taken from what is on disk, so the
byte count never goes negative.

All methods block on file I/O; the writer calls them through ``asyncio.to_thread``. A
lock makes them safe to call from several threads.
"""

from __future__ import annotations

import contextlib
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


class SpoolUnwritable(OSError):
    """The disk refused an append; none of the batch may be counted as spooled."""


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
        self.unencodable = 0  # pairs that could not be written as JSON at all
        self.torn = 0  # lines that did not parse on replay (a crash mid-append)
        self.skipped_segments = 0  # segments missing or unreadable on replay
        self.writable = True  # the last append reached the disk (or none was tried)
        self._lock = threading.Lock()
        self._sizes: dict[Path, int] = {}
        try:
            directory.mkdir(parents=True, exist_ok=True)
            for path in sorted(directory.glob(f"*{SUFFIX}")):
                self._sizes[path] = path.stat().st_size
        except OSError as exc:
            # Start anyway: the database may be up, and the disk may come back.
            log.error("spool directory %s unusable: %s", directory, exc)
            self.writable = False
        self._segments = list(self._sizes)
        # Never append to a segment found on disk: its last line may be torn.
        self._active: Path | None = None

    @property
    def size_bytes(self) -> int:
        return sum(self._sizes.values())

    def is_empty(self) -> bool:
        with self._lock:
            return not self._segments

    def append(self, records: Sequence[PairRecord]) -> int:
        """Append and fsync; return how many were kept (the rest count as dropped).

        Raises :class:`SpoolUnwritable` when the disk refused the write: the caller still
        holds the pairs and decides what to do with them.
        """
        encoded = [line for line in map(self._encode, records) if line is not None]
        with self._lock:
            lines: list[bytes] = []
            size = self.size_bytes
            for line in encoded:
                if size + len(line) > self.max_bytes:
                    continue
                lines.append(line)
                size += len(line)
            if lines:
                try:
                    self._write(lines)
                except OSError as exc:
                    self.writable = False
                    raise SpoolUnwritable(exc.errno, f"spool write failed: {exc}") from exc
                self.writable = True
            self.unencodable += len(records) - len(encoded)
            refused = len(encoded) - len(lines)
            self.dropped += refused
        if refused:
            log.error("spool (%d of %d bytes used) dropped %d pairs",
                      self.size_bytes, self.max_bytes, refused)
        return len(lines)

    @staticmethod
    def _encode(record: PairRecord) -> bytes | None:
        try:
            return json.dumps(record.to_json(), separators=(",", ":")).encode() + b"\n"
        except (TypeError, ValueError) as exc:
            log.error("pair %s cannot be spooled: %s", getattr(record, "id", "?"), exc)
            return None

    def _write(self, lines: list[bytes]) -> None:
        path = self._active
        if path is None or self._sizes.get(path, 0) >= self.segment_bytes:
            number = int(self._segments[-1].stem) + 1 if self._segments else 1
            path = self.directory / f"{number:08d}{SUFFIX}"
        try:
            with path.open("ab") as fh:
                fh.write(b"".join(lines))
                fh.flush()
                os.fsync(fh.fileno())
            if path != self._active:
                self._sync_directory()
        except OSError:
            # A partial write may have left a torn line: never append after it. What is
            # on disk is what counts; an empty new file is not worth a segment name.
            self._active = None
            self._adopt(path, after_failure=True)
            raise
        self._active = path
        self._adopt(path, after_failure=False)

    def _adopt(self, path: Path, *, after_failure: bool) -> None:
        """Record ``path``'s size as the disk reports it.

        After a failure: a known segment keeps its last known size if it cannot be seen
        now (the disk may come back with it); a new file becomes a segment only if the
        failed write left bytes in it (replay skips a torn line); otherwise it leaves no
        trace.
        """
        try:
            size: int | None = path.stat().st_size
        except OSError:
            size = None
        if path in self._sizes:
            if size is not None:
                self._sizes[path] = size
            return
        if after_failure and not size:
            with contextlib.suppress(OSError):
                path.unlink()
            return
        self._segments.append(path)
        self._sizes[path] = size or 0

    def _sync_directory(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def oldest(self) -> Segment | None:
        """The oldest readable segment, sealed: later appends go to a new file.

        A segment that vanished or cannot be read is skipped (and counted), never a
        reason to stop: the ones after it still hold pairs.
        """
        with self._lock:
            while self._segments:
                path = self._segments[0]
                if path == self._active:
                    self._active = None
                try:
                    return Segment(path, self._read(path))
                except OSError as exc:
                    self.skipped_segments += 1
                    log.error("spool segment %s unreadable, skipped: %s", path.name, exc)
                    self._forget(path)
            return None

    def release(self, segment: Segment) -> None:
        """Forget a segment whose pairs are all stored (and delete it, if the disk lets)."""
        with self._lock:
            if segment.path in self._sizes:
                try:
                    segment.path.unlink(missing_ok=True)
                except OSError as exc:
                    log.warning("stored spool segment %s not deleted (%s); a restart will "
                                "replay it harmlessly", segment.path.name, exc)
                self._forget(segment.path)

    def _forget(self, path: Path) -> None:
        self._sizes.pop(path, None)
        with contextlib.suppress(ValueError):
            self._segments.remove(path)
        if path == self._active:
            self._active = None

    def read_all(self) -> list[PairRecord]:
        """Every spooled pair, in the order it was appended."""
        with self._lock:
            return [record for path in self._segments for record in self._read(path)]

    def truncate(self) -> None:
        with self._lock:
            for path in self._segments:
                path.unlink(missing_ok=True)
            self._segments.clear()
            self._sizes.clear()
            self._active = None

    def _read(self, path: Path) -> list[PairRecord]:
        records: list[PairRecord] = []
        for number, line in enumerate(path.read_bytes().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                records.append(PairRecord.from_json(json.loads(line)))
            except (ValueError, TypeError, KeyError, RecursionError) as exc:
                self.torn += 1
                log.warning("spool %s line %d unreadable, skipped: %s", path.name, number, exc)
        return records
