"""Settings: environment (``SHADOWPROXY_*``), a TOML file, and command-line flags.

Precedence is flag > file > environment. :func:`load_settings` is the only way in;
it turns every validation problem into a :class:`SettingsError` whose message names
the setting the way the user wrote it (``SHADOWPROXY_PORT``), so the CLI can print one
line and exit 2.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "SHADOWPROXY_"
BUILTIN_REDACTORS = ("secrets", "email", "phone", "card")


class SettingsError(Exception):
    """A setting is missing or wrong; the message is one line for the user."""


def _check_http_url(value: str | None) -> str | None:
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"must be an http:// or https:// URL with a host, got {value!r}")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as exc:
        raise ValueError(f"has a bad port: {value!r}") from exc
    return value.rstrip("/")


def split_redactors(value: str | list[str]) -> list[str]:
    """Split ``secrets,email,re:a,b`` keeping commas that belong to a ``re:`` pattern."""
    if isinstance(value, list):
        return [v.strip() for v in value if v.strip()]
    items: list[str] = []
    for piece in value.split(","):
        stripped = piece.strip()
        starts_item = stripped in BUILTIN_REDACTORS or stripped.startswith("re:")
        if items and not starts_item and items[-1].startswith("re:"):
            items[-1] += "," + piece
        elif stripped:
            items.append(stripped)
    return items


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="forbid",
        populate_by_name=True,
        hide_input_in_errors=True,
    )

    primary_url: str | None = None
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    admin_host: str = "127.0.0.1"
    admin_port: int = Field(9090, ge=0, le=65535)
    admin_token: SecretStr | None = None
    database_url: SecretStr | None = None
    data_dir: Path = Path("~/.local/share/shadowproxy")

    shadow_model: str = "claude-haiku-4-5"
    shadow_api_key: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices(
            "shadow_api_key", f"{ENV_PREFIX}SHADOW_API_KEY", "ANTHROPIC_API_KEY"
        ),
    )
    shadow_base_url: str | None = None
    shadow_provider: Literal["anthropic", "bedrock", "vertex"] = "anthropic"
    shadow_max_retries: int = Field(1, ge=0, le=10)
    sample_rate: float = Field(1.0, ge=0.0, le=1.0, allow_inf_nan=False)
    replay_rate: float = Field(0.0, ge=0.0, le=1.0, allow_inf_nan=False)
    shadow_concurrency: int = Field(32, ge=1)
    shadow_queue: int = Field(1000, ge=0)
    shadow_timeout_s: float = Field(120.0, gt=0, allow_inf_nan=False)
    tag_header: str = "x-shadow-tag"
    redact: str | list[str] = "secrets"
    retention_days: int = Field(30, ge=0)
    max_body_mb: float = Field(32.0, gt=0, allow_inf_nan=False)
    shadow_default_max_tokens: int = Field(4096, ge=1)
    grace_s: float = Field(30.0, ge=0, allow_inf_nan=False)

    upstream_timeout_s: float = Field(600.0, gt=0, allow_inf_nan=False)
    upstream_connect_timeout_s: float = Field(10.0, gt=0, allow_inf_nan=False)
    prices_file: Path | None = None
    spool_max_mb: float = Field(512.0, gt=0, allow_inf_nan=False)
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # None: one worker per core.
    workers: int | None = Field(None, ge=1, le=256)

    # -- Messages features, conversations, model end-of-life (features branch) --
    # Server tools (web search/fetch, code execution, tool search) run and bill at the
    # provider: requests using them are skipped unless this is "allow".
    shadow_server_tools: Literal["skip", "allow"] = "skip"
    # Header naming the conversation (agent session) an exchange belongs to; removed
    # before forwarding, like tag_header.
    conversation_header: str = "x-shadow-conversation"

    # OpenAI Responses API: what each mirror process keeps of the primary's answers so a
    # request with previous_response_id can be sent to the shadow with its history.
    responses_remembered: int = Field(10_000, ge=0)
    responses_memory_mb: float = Field(64.0, ge=0)
    # The same history shared by every mirror and replica, in PostgreSQL
    # (response_history): how long a turn is kept, and the table's bound.
    responses_keep_h: float = Field(24.0, gt=0, allow_inf_nan=False)
    responses_stored_mb: float = Field(1024.0, gt=0, allow_inf_nan=False)


    # --- judging (issue 10: the verdict engine and the judge; see shadowproxy/judge.py) ---
    judge_model: str | None = None
    judge_provider: Literal["anthropic", "bedrock", "vertex", "openai"] = "anthropic"
    judge_base_url: str | None = None
    judge_api_key: SecretStr | None = None
    judge_max_usd: float = Field(5.0, ge=0)
    judge_concurrency: int = Field(8, ge=1, le=512)
    judge_rubric_file: Path | None = None
    judge_timeout_s: float = Field(60.0, gt=0)
    judge_max_retries: int = Field(2, ge=0, le=10)
    # Which of the pairs that need the judge it sees, per tag: "auto" (enough for a
    # ±2-point interval of the worse rate, then what the budget allows), "all", or a
    # number per tag (issue 19; shadowproxy/decision/sampling.py).
    judge_sample: str = "auto"

    # -- Containment and memory bounds (reliab-contain) ---------------------------------
    # Bytes all exchanges pending in one mirror may hold (request bodies and captured
    # answers); past it new shadows are dropped (recorded, counted as outcome "dropped").
    shadow_queue_mb: float = Field(256.0, gt=0)
    # Bytes all in-flight mirrored exchanges of one proxy worker may hold in capture
    # buffers; past it a new exchange is not mirrored (user unaffected) and counted in
    # shadowproxy_pairs_lost_total{reason="capture_budget"}.
    capture_budget_mb: float = Field(256.0, gt=0)


    # -- supervision and listener limits (reliability: serve.py, server.py) -----------
    # A new connection must send a complete request head within this many seconds.
    header_timeout_s: float = Field(10.0, gt=0)
    # A request body must arrive whole within this many seconds (else 408).
    body_timeout_s: float = Field(60.0, gt=0)
    # An idle keep-alive connection is closed after this many seconds without a request.
    idle_timeout_s: float = Field(75.0, gt=0)
    # Open connections per proxy process; past it a new one gets a 503 and is closed.
    max_connections: int = Field(4096, ge=1)
    # The admin listener's own cap, so probes get through when the proxy port is full.
    admin_max_connections: int = Field(64, ge=1)
    # A mirror that sends no heartbeat for this long is stuck: killed and restarted.
    mirror_stall_s: float = Field(15.0, gt=0)
    # Longest wait between restarts of a child that keeps dying.
    restart_backoff_max_s: float = Field(30.0, gt=0)

    # -- cutover in steps (shadowproxy/cutover, proxy/cutover_serve.py) ----------------
    # A request chosen for the shadow falls back to the primary when no content arrives
    # from the shadow within this many seconds.
    cutover_ttfb_s: float = Field(10.0, gt=0, allow_inf_nan=False)
    # The guard: over this many requests chosen for the shadow (per worker and tag), a
    # fallback rate above CUTOVER_MAX_FALLBACK_RATE rolls the tag back to 0%.
    cutover_guard_window: int = Field(200, ge=1)
    cutover_max_fallback_rate: float = Field(0.05, ge=0.0, le=1.0, allow_inf_nan=False)
    # How often each worker reads the plans (a change is followed within this).
    cutover_poll_s: float = Field(2.0, gt=0, le=5.0, allow_inf_nan=False)
    # -- admin listener and human review (review branch: issues 17 and 20) ------------
    # Proxies allowed to tell the admin listener the client's address, scheme and host
    # (X-Forwarded-For/-Proto/-Host, Forwarded): addresses or CIDR blocks, comma-separated.
    admin_trusted_proxies: str | list[str] = ""
    # "always": the session cookie is Secure even when no trusted proxy says https.
    admin_cookie_secure: Literal["auto", "always"] = "auto"
    # Share of review items offered to a second reviewer (human-human agreement).
    review_overlap: float = Field(0.1, ge=0.0, le=1.0, allow_inf_nan=False)

    @field_validator("admin_trusted_proxies")
    @classmethod
    def _trusted_proxies(cls, value: str | list[str]) -> list[str]:
        items = [v.strip() for v in (value.split(",") if isinstance(value, str) else value)
                 if v.strip()]
        for item in items:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r:.60} is not an IP address or network "
                                 "(e.g. 10.0.0.5 or 10.0.0.0/8)") from None
        return items

    @field_validator("judge_sample")
    @classmethod
    def _sample_rule(cls, value: str) -> str:
        from shadowproxy.decision.sampling import parse_sample_rule

        return str(parse_sample_rule(value))

    @field_validator("primary_url", "shadow_base_url", "judge_base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        return _check_http_url(value)

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(
            ("postgresql://", "postgresql+asyncpg://", "postgres://")
        ):
            raise ValueError("must be a postgresql+asyncpg:// URL")
        return value

    @field_validator("tag_header", "conversation_header")
    @classmethod
    def _header_name(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+", value):
            raise ValueError(f"is not a valid HTTP header name: {value!r}")
        return value.lower()

    @field_validator("redact")
    @classmethod
    def _redactors(cls, value: str | list[str]) -> list[str]:
        items = split_redactors(value)
        for item in items:
            if item.startswith("re:"):
                try:
                    re.compile(item[3:])
                except re.error as exc:
                    raise ValueError(f"pattern {item[3:]!r} does not compile: {exc}") from exc
            elif item not in BUILTIN_REDACTORS and item != "none":
                raise ValueError(
                    f"unknown redactor {item!r} (built-ins: {', '.join(BUILTIN_REDACTORS)}; "
                    "or re:PATTERN)"
                )
        return [i for i in items if i != "none"]

    @field_validator("data_dir")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()

    @property
    def redactors(self) -> list[str]:
        return list(self.redact)

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)

    def judge_key(self) -> str | None:
        """The judge's own key; for the anthropic provider it falls back to the shadow's
        (never to the application's, which is not stored anywhere)."""
        if self.judge_api_key is not None:
            return self.judge_api_key.get_secret_value()
        if self.judge_provider == "anthropic" and self.shadow_api_key is not None:
            return self.shadow_api_key.get_secret_value()
        return None

    def require_primary_url(self) -> str:
        if not self.primary_url:
            raise SettingsError(f"{ENV_PREFIX}PRIMARY_URL: required for serve (e.g. "
                                "https://api.openai.com)")
        return self.primary_url


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError as exc:
        raise SettingsError(f"--config: file not found: {path}") from exc
    except OSError as exc:
        raise SettingsError(f"--config: cannot read {path}: {exc.strerror or exc}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SettingsError(f"--config: {path} is not valid TOML: {exc}") from exc
    # The file may hold a [shadowproxy] table or the keys at top level.
    table = raw.get("shadowproxy", raw)
    if not isinstance(table, dict):
        raise SettingsError(f"--config: {path}: [shadowproxy] must be a table of settings")
    out: dict[str, Any] = {}
    for key, value in table.items():
        name = key.lower().removeprefix(ENV_PREFIX.lower())
        if name not in Settings.model_fields:
            raise SettingsError(f"--config: {path}: unknown setting {key!r}")
        out[name] = value
    return out


# Where a value came from, so an error names it the way the user wrote it: the
# environment variable, the key in the --config file, or the flag.
Sources = dict[str, str]


def _setting_name(name: str, sources: Sources | None = None) -> str:
    source = (sources or {}).get(name)
    if source is not None:
        return source
    return f"{ENV_PREFIX}{name.upper()}"


def _describe(error: Any, sources: Sources | None = None) -> str:
    loc = error.get("loc") or ()
    name = str(loc[0]) if loc else "settings"
    if name in ("ANTHROPIC_API_KEY", f"{ENV_PREFIX}SHADOW_API_KEY"):
        name = "shadow_api_key"
    msg = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    if error.get("type") == "missing":
        msg = "required"
    return f"{_setting_name(name, sources)}: {msg}"


def _unknown_environment() -> str | None:
    """A misspelt ``SHADOWPROXY_*`` variable would otherwise be ignored in silence."""
    for key in os.environ:
        if key.startswith(ENV_PREFIX) and not key.startswith(f"{ENV_PREFIX}TEST_"):
            name = key.removeprefix(ENV_PREFIX).lower()
            if name not in Settings.model_fields:
                return f"{key}: unknown setting (see the settings table in the README)"
    return None


def load_settings(
    config: Path | None = None, overrides: dict[str, Any] | None = None
) -> Settings:
    """Build settings from env, an optional TOML file and flag overrides (in that order)."""
    unknown = _unknown_environment()
    if unknown:
        raise SettingsError(unknown)
    values: dict[str, Any] = _read_toml(config) if config else {}
    sources: Sources = {name: f"{config}: {name}" for name in values}
    flags = {k: v for k, v in (overrides or {}).items() if v is not None}
    values.update(flags)
    sources.update({name: f"--{name.replace('_', '-')}" for name in flags})
    try:
        settings = Settings(**values)
    except ValidationError as exc:
        raise SettingsError(_describe(exc.errors()[0], sources)) from None
    _check_prices_file(settings, sources)
    return settings


# -- first hour: checks that turn a later traceback into one line at start ------------


def _check_prices_file(settings: Settings, sources: Sources) -> None:
    """Load PRICES_FILE here, in the parent: a bad file found by the mirror child would
    be a traceback in another process's log and a proxy that mirrors nothing."""
    if settings.prices_file is None:
        return
    from shadowproxy.pricing import PriceFileError, PriceTable

    try:
        PriceTable.load(settings.prices_file)
    except PriceFileError as exc:
        raise SettingsError(f"{_setting_name('prices_file', sources)}: {exc}") from None


def ensure_data_dir(settings: Settings) -> Path:
    """Create DATA_DIR and prove it writable, or say in one line why it is not."""
    path = settings.data_dir
    name = f"{ENV_PREFIX}DATA_DIR"
    if path.exists() and not path.is_dir():
        raise SettingsError(f"{name}: {path} is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise SettingsError(f"{name}: {path} is not a writable directory ({reason})") from None
    return path
