"""The mirror process: shadow calls, normalisation and recording, away from the user's path.

::

    proxy ──frames──▶ process (reader) ──▶ engine.MirrorEngine
                                             ├─ translate (OpenAI → Messages), pure
                                             ├─ translate_responses (Responses → Messages)
                                             │   with conversations.ResponseHistory for
                                             │   previous_response_id (memory, then
                                             │   history_store in PostgreSQL)
                                             ├─ shadow.ShadowCaller (anthropic SDK)
                                             ├─ replay.Replayer (noise floor)
                                             └─ assemble: normalise both sides, redact,
                                                price → PairRecord ──▶ store writer
    conversations: what the mirrors saw of Responses answers, for previous_response_id
    history_store: those answers in PostgreSQL, shared by every worker and replica
    exporter: the engine's and writer's counters into the shared metrics files

:mod:`.translate`, :mod:`.translate_responses` and :mod:`.turns` are pure; the rest does the I/O
(:mod:`.conversations` is the mirror process's memory of Responses answers, backed by
:mod:`.history_store`). Redaction,
shared with the logs of every process, is :mod:`shadowproxy.redact`.
"""
