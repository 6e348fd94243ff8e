"""Cutover in steps: move a tag's conversations to the shadow model, a step at a time,
with the current model as fallback and every exchange still compared.

::

    cutover start|pause|resume|rollback ──▶ plans_db ──▶ cutover_plans, cutover_events
    cutover advance: diff + gate on the tag's pairs since the step began ─┘ (decision/)
    proxy process: proxy/cutover_watch polls the plans (asyncpg) ─▶ routing table
        handler ─▶ proxy/cutover_serve: plan.chosen(conversation)? ─▶ the shadow answers
            (proxy/shadow_client; messages_answer, to_chat translate back), or the primary
            falls back; guard counts fallbacks and rolls the tag back for everyone
        then the primary is asked in the background; the mirror stores the pair (served_by)
    report/dashboard: report_section (SQL aggregates) + section (the model)

Pure: :mod:`.plan`, :mod:`.guard`, :mod:`.messages_answer`, :mod:`.to_chat`,
:mod:`.section`. :mod:`.plans_db` and :mod:`.report_section` read and write PostgreSQL
with asyncpg (the proxy process loads no SQLAlchemy); :mod:`.advance` and
:mod:`.commands` are the command line's; :mod:`.cloud_client` is the anthropic SDK's
Bedrock and Vertex clients, loaded only when the shadow runs on those platforms.
"""
