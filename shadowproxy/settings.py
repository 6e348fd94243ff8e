"""Settings: environment (``SHADOWPROXY_*``), a TOML file, and command-line flags.

Precedence is flag > file > environment. :func:`load_settings` is the only way in;
it turns every validation problem into a :class:`SettingsError` whose message names
the setting the way the user wrote it (``SHADOWPROXY_PORT``), so the CLI can print one
line and exit 2.
"""

from __future__ import annotations

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
    sample_rate: float = Field(1.0, ge=0.0, le=1.0)
    replay_rate: float = Field(0.0, ge=0.0, le=1.0)
    shadow_concurrency: int = Field(32, ge=1)
    shadow_queue: int = Field(1000, ge=0)
    shadow_timeout_s: float = Field(120.0, gt=0)
    tag_header: str = "x-shadow-tag"
    redact: str | list[str] = "secrets"
    retention_days: int = Field(30, ge=0)
    max_body_mb: float = Field(32.0, gt=0)
    shadow_default_max_tokens: int = Field(4096, ge=1)
    grace_s: float = Field(30.0, ge=0)

    upstream_timeout_s: float = Field(600.0, gt=0)
    upstream_connect_timeout_s: float = Field(10.0, gt=0)
    prices_file: Path | None = None
    spool_max_mb: float = Field(512.0, gt=0)
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # None: one worker per core.
    workers: int | None = Field(None, ge=1, le=256)

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

    @field_validator("primary_url", "shadow_base_url")
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

    @field_validator("tag_header")
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
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"--config: {path} is not valid TOML: {exc}") from exc
    # The file may hold a [shadowproxy] table or the keys at top level.
    table = raw.get("shadowproxy", raw)
    out: dict[str, Any] = {}
    for key, value in table.items():
        name = key.lower().removeprefix(ENV_PREFIX.lower())
        if name not in Settings.model_fields:
            raise SettingsError(f"--config: {path}: unknown setting {key!r}")
        out[name] = value
    return out


def _describe(error: Any) -> str:
    loc = error.get("loc") or ()
    name = str(loc[0]) if loc else "settings"
    if name in ("ANTHROPIC_API_KEY", f"{ENV_PREFIX}SHADOW_API_KEY"):
        name = "shadow_api_key"
    msg = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    if error.get("type") == "missing":
        msg = "required"
    return f"{ENV_PREFIX}{name.upper()}: {msg}"


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
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return Settings(**values)
    except ValidationError as exc:
        raise SettingsError(_describe(exc.errors()[0])) from None
