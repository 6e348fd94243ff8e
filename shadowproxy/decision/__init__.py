"""The decision, offline: from stored pairs to a verdict a release manager can sign.

::

    pairs ──diff──▶ scores (verdicts) ──report──▶ Report ──▶ JSON / HTML / dashboard
                                                     └──gate + policy──▶ exit 0 / 1 / 2
    pairs ──export──▶ CSV / JSON Lines / Parquet

Pure modules (no I/O): :mod:`.scoring`, :mod:`.stats`, :mod:`.gate`, :mod:`.since`.
:mod:`.diff`, :mod:`.report` and :mod:`.export` read and write the database; nothing
here imports the proxy or the mirror.
"""
