"""shadowproxy: answer from the current model, mirror to Claude Haiku 4.5, keep the evidence.

::

    app ──HTTP──▶ proxy/  (one process per worker)  ──bytes──▶ PRIMARY_URL
                    │ exchange.ExchangeStart / ExchangeEnd: request bytes, response chunks
                    ▼ with monotonic timestamps (non-blocking, bounded; overflow counted)
                  mirror/  (one process per worker)
                    ├─ translate → shadow call via the anthropic SDK (same streaming mode)
                    ├─ wire/ normalisers: both answers → Normalized, TTFT, latency
                    ├─ redact, pricing → records.PairRecord
                    └─ store/ writer: COPY batches into PostgreSQL, spool when it is down
    offline:  decision/  diff (verdicts) → report (JSON/HTML) → gate (exit 0/1/2) / export
    simulator/: fake providers and the offline demo

Packages and what runs where:

- :mod:`.proxy` — the user's path and its listeners; never imports the SDKs, SQLAlchemy
  or Alembic (an import contract checks it).
- :mod:`.mirror` — the mirror process: shadow calls, translation, redaction, records.
- :mod:`.wire` — the providers' wire formats, pure.
- :mod:`.store` — schema, migrations, writer, spool, retention, the embedded database.
- :mod:`.decision` — scoring, statistics, diff, report, gate, export; offline.
- :mod:`.cutover` — cutover in steps: plans, the guard, the shadow's answer in the
  caller's API; the proxy routes by the plans, the command line moves them.
- :mod:`.simulator` — simulated providers for tests, benchmarks and the demo.

At the top only the vocabulary they share (:mod:`.settings`, :mod:`.records`,
:mod:`.exchange`, :mod:`.pricing`, :mod:`.metrics`, :mod:`.logs`, :mod:`.tasks`) and the
command line (:mod:`.cli`).
"""

__all__ = ["__version__"]
__version__ = "0.1.0"
