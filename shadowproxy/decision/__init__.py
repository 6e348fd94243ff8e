"""The decision, offline: from stored pairs to a verdict a release manager can sign.

::

    pairs ──diff──▶ scores (verdicts; the judge sees a sample per tag) ─┐
                      └─ marks 10-minute slots stale ──▶ report_rollups ┴─report──▶ Report
    Report ──▶ JSON / HTML / dashboard;  Report + policy ──gate──▶ exit 0 / 1 / 2
    pairs ──export──▶ CSV / JSON Lines / Parquet

Pure modules (no I/O): :mod:`.scoring`, :mod:`.verdict`, :mod:`.stats`, :mod:`.gate`,
:mod:`.since`, :mod:`.sampling`, :mod:`.histogram`, and the SQL text of
:mod:`.diff_sql` and :mod:`.summary_sql`. :mod:`.diff`, :mod:`.judge_pass`,
:mod:`.summaries`, :mod:`.report` and :mod:`.export` read and write the database;
nothing here imports the proxy or the mirror.
"""
