"""The proxy process: the user's path and everything that runs beside it.

::

    app ──▶ handler.Proxy ──bytes──▶ PRIMARY_URL        (routing decides what is mirrored)
               │ ExchangeStart / ExchangeEnd (non-blocking, bounded)
               ▼
            mirror_link ──unix socket──▶ mirror process (started by mirror_child)
    admin listener: admin (/healthz, /readyz, /metrics), readiness, dashboard
    serve: the supervisor, its workers, their listeners (app); sockets: the proxy port,
    bound before anything starts, listening only while a worker serves it
    cutover: cutover_watch polls the plans; cutover_serve has the shadow answer the
             tags a plan chooses (shadow_client), the primary as fallback

Nothing here imports the anthropic SDK, SQLAlchemy or Alembic: the proxy process stays
small and starts fast (an import contract in pyproject.toml checks it; its two commented
exceptions are the pure request translator and, for a shadow on Bedrock or Vertex, the
SDK's platform clients, loaded only when a plan routes traffic there).
"""
