"""The mirror process: shadow calls, normalisation and recording, away from the user's path.

::

    proxy ──frames──▶ process (reader) ──▶ engine.MirrorEngine
                                             ├─ translate (OpenAI → Messages), pure
                                             ├─ shadow.ShadowCaller (anthropic SDK)
                                             ├─ replay.Replayer (noise floor)
                                             └─ assemble: normalise both sides, redact,
                                                price → PairRecord ──▶ store writer
    exporter: the engine's and writer's counters into the shared metrics files

:mod:`.translate` and :mod:`.redact` are pure; the rest does the I/O.
"""
