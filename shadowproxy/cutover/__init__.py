"""Cutover in steps: move a tag's conversations to the shadow model a step at a time,
with the current model as fallback and every exchange still compared.

::

    cutover start|pause|resume|rollback (commands) ──▶ plans_db ──▶ cutover_plans,
    cutover advance: diff + gate on the step's pairs (advance) ──┘    cutover_events
    proxy process (shadowproxy/proxy/):
      cutover_watch polls the plans (asyncpg, every CUTOVER_POLL_S) ─▶ routing table
      handler ─▶ cutover_serve: plan.chosen(conversation)? the shadow answers
                 (shadow_client; cloud_client for Bedrock/Vertex) in the caller's API
                 (answer_shapes: messages_answer, to_chat), or the primary falls back;
                 guard counts fallbacks and rolls the tag back for everyone
             ─▶ then the primary is asked in the background; the mirror stores the pair
                with served_by
    report and dashboard: report_section (SQL aggregates) fills section

Pure: :mod:`.plan`, :mod:`.guard`, :mod:`.messages_answer`, :mod:`.to_chat`,
:mod:`.shadow_reply`, :mod:`.answer_shapes`, :mod:`.section`. :mod:`.plans_db` and
:mod:`.report_section` read and write PostgreSQL with asyncpg (the proxy process loads no
SQLAlchemy); :mod:`.advance` and :mod:`.commands` are the command line's;
:mod:`.cloud_client` is the anthropic SDK's Bedrock and Vertex clients, loaded only when
the shadow serves users on those platforms.
"""
