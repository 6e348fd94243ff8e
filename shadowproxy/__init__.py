"""shadowproxy: answer from the current model, mirror to Claude Haiku 4.5, keep the evidence.

::

    app ──HTTP──▶ proxy (aiohttp, per worker) ──▶ PRIMARY_URL        user path: bytes only
                    │  tee: request bytes, response chunks + monotonic timestamps
                    ▼  (non-blocking, bounded; overflow = counted "dropped")
                  mirror process (one per worker)
                    ├─ shadow call via the anthropic SDK (translated when OpenAI)
                    ├─ wire.* normalisers: both answers → Normalized, TTFT, latency
                    ├─ redact → PairRecord
                    └─ writer: batched INSERT into PostgreSQL, spool file when it is down
    offline:  diff (scores) → report (HTML/JSON) → gate (exit 0/1/2) / export

Pure modules (no I/O): ``wire``, ``translate``, ``normalized``, ``redact``, ``pricing``,
``scoring``. Everything with sockets, files or processes sits at the edges.
"""

__all__ = ["__version__"]
__version__ = "0.1.0"
