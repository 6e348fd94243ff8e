"""Incremental Server-Sent Events parsing, per the HTML living standard's event-stream rules.

The mirror feeds this the exact byte chunks that went to the client, so a chunk can end
anywhere: inside a line, between the ``\\r`` and ``\\n`` of a line break, or inside a
multi-byte UTF-8 character. Each chunk is scanned once; only the unfinished last line is
carried over, so cost stays linear in the stream's length whatever the chunking.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

_LINE_END = re.compile(r"\r\n|\r|\n")
_BOM = "\ufeff"


@dataclass(slots=True)
class SSEEvent:
    # None when the event had no (or an empty) ``event:`` field, i.e. a plain "message".
    event: str | None
    data: str


class SSEParser:
    """Turns bytes into :class:`SSEEvent` s; never raises (bad UTF-8 becomes U+FFFD)."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        # Pieces of the line not yet ended; joined only when its terminator arrives.
        self._partial: list[str] = []
        # The last chunk ended in "\r": a "\n" opening the next chunk belongs to it.
        self._after_cr = False
        self._at_start = True
        self._event: str | None = None
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        return self._feed_text(self._decoder.decode(chunk))

    def close(self) -> list[SSEEvent]:
        """Flush the end of the stream, dispatching a last event that lacked its blank line.

        The standard drops such an event; we keep it because a truncated answer is still
        evidence of what the provider said.
        """
        events = self._feed_text(self._decoder.decode(b"", final=True))
        if self._partial:
            self._take_line("".join(self._partial))
            self._partial = []
        event = self._dispatch()
        if event is not None:
            events.append(event)
        return events

    def _feed_text(self, text: str) -> list[SSEEvent]:
        if not text:
            return []
        if self._at_start:
            self._at_start = False
            text = text.removeprefix(_BOM)
        if self._after_cr:
            self._after_cr = False
            text = text.removeprefix("\n")
        events: list[SSEEvent] = []
        start = 0
        for match in _LINE_END.finditer(text):
            piece = text[start : match.start()]
            if self._partial:
                self._partial.append(piece)
                line = "".join(self._partial)
                self._partial = []
            else:
                line = piece
            start = match.end()
            if line:
                self._take_line(line)
            else:
                event = self._dispatch()
                if event is not None:
                    events.append(event)
        if start < len(text):
            self._partial.append(text[start:])
        elif text.endswith("\r"):
            self._after_cr = True
        return events

    def _take_line(self, line: str) -> None:
        if line.startswith(":"):
            return
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value or None
        # "id", "retry" and unknown fields change nothing we record.

    def _dispatch(self) -> SSEEvent | None:
        if not self._data:
            self._event = None
            return None
        event = SSEEvent(event=self._event, data="\n".join(self._data))
        self._event = None
        self._data = []
        return event
