"""Model end of life: is a primary, shadow or judge model deprecated or retired, since
when, and who says so.

Three sources, merged so that the most severe wins (retired > deprecated > active):

- our own table (``model_lifecycle.toml`` next to this module): known deprecations and
  retirements, with a date and a source per row. It keeps what an SDK release forgets:
  anthropic 2.16 dropped ``claude-sonnet-4-5`` from its data once it retired;
- the installed anthropic SDK's ``anthropic/_data/deprecated_models.py`` (model id →
  end-of-life date as the SDK spells it);
- the Models API (``GET /v1/models/{id}``: ``lifecycle``, ``retires_at``,
  ``max_tokens``), when it answers (:mod:`shadowproxy.models_api` asks it).

A retirement date that has come means retired, whatever a source's state says. Among
sources of the same severity the earlier date wins (the sooner retirement is the one to
plan for), then the first source in the order above the Models API, the table, the SDK.

Pure: the day and the data are arguments. :mod:`shadowproxy.lifecycle_sources` reads
the real clock and the installed data, at the edge (the CLI and serve) only.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

__all__ = [
    "DEPRECATED", "MODELS_API_SOURCE", "RETIRED", "SDK_SOURCE", "LifecycleData",
    "LifecycleView", "ModelLifecycle", "ModelWatch", "base_model_id", "effective_state",
    "from_model_info", "from_sdk", "from_table", "lifecycle_warning", "merge",
    "parse_sdk_date", "parse_sdk_source", "parse_table", "sdk_end_of_life",
]

ACTIVE, DEPRECATED, RETIRED = "active", "deprecated", "retired"
# Unknown (None) below active: a source that knows the model says more than one that
# does not.
_SEVERITY: Mapping[str | None, int] = {None: 0, ACTIVE: 1, DEPRECATED: 2, RETIRED: 3}
TABLE_STATES = (DEPRECATED, RETIRED)

_ORDINAL = re.compile(r"(\d+)(st|nd|rd|th)\b")
# Provider wrappings around a Claude id: Bedrock's [region.]anthropic.…-v1:0, Vertex's @date.
_BEDROCK = re.compile(r"^(?:[a-z]+\.)?anthropic\.")
_BEDROCK_VERSION = re.compile(r"-v\d+(?::\d+)?$")
MODELS_API_SOURCE = "models api"
SDK_SOURCE = "anthropic sdk"


@dataclass(slots=True, frozen=True)
class ModelLifecycle:
    """What is known about one model's life: ``lifecycle`` is ``active``, ``deprecated``
    or ``retired`` (None when no source knows the model); ``retires_at`` the retirement
    date, due or past."""

    model: str
    lifecycle: str | None = None
    retires_at: date | None = None
    max_tokens: int | None = None
    source: str | None = None


# ----------------------------------------------------------------------- parsing


def parse_sdk_date(text: str) -> date | None:
    """``"November 30th, 2026"`` (the SDK's spelling) → a date; None if unreadable."""
    try:
        return datetime.strptime(_ORDINAL.sub(r"\1", text.strip()), "%B %d, %Y").date()
    except ValueError:
        return None


def parse_sdk_source(text: str) -> dict[str, str]:
    """``DEPRECATED_MODELS`` from the text of the SDK's ``deprecated_models.py``, read as
    a literal (never run). ValueError when the file has no such mapping."""
    import ast  # only when the SDK's file is read

    try:
        tree = ast.parse(text)
    except SyntaxError as exc:
        raise ValueError(f"not Python: {exc.msg}") from None
    for node in ast.walk(tree):
        target = node.target if isinstance(node, ast.AnnAssign) else (
            node.targets[0] if isinstance(node, ast.Assign) and node.targets else None)
        if isinstance(target, ast.Name) and target.id == "DEPRECATED_MODELS":
            value = getattr(node, "value", None)
            try:
                table = ast.literal_eval(value) if value is not None else None
            except ValueError:
                raise ValueError("DEPRECATED_MODELS is not a literal") from None
            if isinstance(table, dict):
                return {str(k): str(v) for k, v in table.items()}
            raise ValueError("DEPRECATED_MODELS is not a dict")
    raise ValueError("no DEPRECATED_MODELS")


def parse_table(raw: Mapping[str, Any], origin: str) -> dict[str, ModelLifecycle]:
    """Our table (``model_lifecycle.toml``, parsed TOML) by model id. A row without an
    id, a known state, a date or a source is refused with a line naming it."""
    rows = raw.get("model", [])
    unknown = set(raw) - {"model"}
    if unknown or not isinstance(rows, list):
        raise ValueError(f"{origin}: only [[model]] rows belong here, not {sorted(unknown)}")
    table: dict[str, ModelLifecycle] = {}
    for number, row in enumerate(rows, start=1):
        where = f"{origin}: row {number}"
        if not isinstance(row, dict):
            raise ValueError(f"{where}: not a table")
        extra = set(row) - {"id", "state", "date", "source"}
        if extra:
            raise ValueError(f"{where}: unknown field(s) {sorted(extra)}")
        model, state, when, source = (row.get(k) for k in ("id", "state", "date", "source"))
        if not isinstance(model, str) or not model.strip():
            raise ValueError(f"{where}: id must be a model id")
        where = f"{origin}: {model}"
        if state not in TABLE_STATES:
            raise ValueError(f"{where}: state must be one of {', '.join(TABLE_STATES)}")
        if not isinstance(when, date) or isinstance(when, datetime):
            raise ValueError(f"{where}: date must be a date (YYYY-MM-DD, unquoted)")
        if not isinstance(source, str) or not source.strip():
            raise ValueError(f"{where}: every row needs its source")
        if model in table:
            raise ValueError(f"{where}: listed twice")
        table[model] = ModelLifecycle(model, state, when, None, source.strip())
    return table


def base_model_id(model: str) -> str:
    """The Anthropic id inside a provider's spelling (Bedrock, Vertex, OpenRouter)."""
    name = model.strip().rsplit("/", 1)[-1].split("@", 1)[0]
    name = _BEDROCK.sub("", name)
    return _BEDROCK_VERSION.sub("", name)


def _find(model: str, table: Mapping[str, Any]) -> Any:
    for name in (model, base_model_id(model)):
        if name in table:
            return table[name]
    return None


# ----------------------------------------------------------------- one source each


def sdk_end_of_life(model: str, sdk: Mapping[str, str]) -> date | None:
    """The end-of-life date the SDK's data gives ``model``."""
    text = _find(model, sdk)
    return parse_sdk_date(text) if isinstance(text, str) else None


def from_sdk(model: str, sdk: Mapping[str, str], source: str = SDK_SOURCE) -> ModelLifecycle:
    """What the SDK's data alone says (deprecated with a date, or nothing)."""
    when = sdk_end_of_life(model, sdk)
    if when is None:
        return ModelLifecycle(model)
    return ModelLifecycle(model, DEPRECATED, when, None, source)


def from_table(model: str, table: Mapping[str, ModelLifecycle]) -> ModelLifecycle:
    """What our table alone says."""
    row = _find(model, table)
    if not isinstance(row, ModelLifecycle):
        return ModelLifecycle(model)
    return ModelLifecycle(model, row.lifecycle, row.retires_at, None, row.source)


def _date(value: Any) -> date | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.astimezone(UTC).date() if parsed.tzinfo else parsed.date()


def from_model_info(model: str, info: Mapping[str, Any]) -> ModelLifecycle:
    """What a Models API ``ModelInfo`` body says (an older API has no lifecycle fields:
    then only ``max_tokens``)."""
    max_tokens = info.get("max_tokens")
    max_tokens = max_tokens if isinstance(max_tokens, int) and max_tokens > 0 else None
    lifecycle = info.get("lifecycle")
    lifecycle = lifecycle if isinstance(lifecycle, str) and lifecycle in _SEVERITY else None
    return ModelLifecycle(model, lifecycle, _date(info.get("retires_at")), max_tokens,
                          MODELS_API_SOURCE)


# ------------------------------------------------------------------------ merging


def effective_state(info: ModelLifecycle, today: date) -> str | None:
    """The state on ``today``: a retirement date that has come means retired."""
    if info.retires_at is not None and info.retires_at <= today:
        return RETIRED
    return info.lifecycle


def merge(model: str, found: Iterable[ModelLifecycle | None], today: date) -> ModelLifecycle:
    """The most severe of ``found`` on ``today`` (see the module's docstring), with the
    first ``max_tokens`` any source gives."""
    known = [f for f in found if f is not None]
    max_tokens = next((f.max_tokens for f in known if f.max_tokens), None)
    best: ModelLifecycle | None = None
    best_key: tuple[int, int] = (-1, 0)
    for info in known:
        state = effective_state(info, today)
        # Within one severity the earlier date wins, and any date beats none; ties keep
        # the first source.
        key = (_SEVERITY.get(state, 0),
               -info.retires_at.toordinal() if info.retires_at else -date.max.toordinal())
        if key > best_key:
            best, best_key = ModelLifecycle(model, state, info.retires_at, None,
                                            info.source), key
    if best is None or (best.lifecycle is None and best.retires_at is None):
        return ModelLifecycle(model, None, None, max_tokens, None)
    return ModelLifecycle(model, best.lifecycle, best.retires_at, max_tokens, best.source)


@dataclass(frozen=True, slots=True)
class LifecycleData:
    """What is known without asking the network: our table and the SDK's data."""

    table: Mapping[str, ModelLifecycle] = field(default_factory=dict)
    sdk: Mapping[str, str] = field(default_factory=dict)
    sdk_source: str = SDK_SOURCE  # e.g. "anthropic SDK 2.16.0"

    def offline(self, model: str) -> tuple[ModelLifecycle, ModelLifecycle]:
        return (from_table(model, self.table), from_sdk(model, self.sdk, self.sdk_source))

    def as_of(self, today: date) -> LifecycleView:
        return LifecycleView(self, today)


@dataclass(frozen=True, slots=True)
class LifecycleView:
    """The data judged on one day: what a report, or one start-up check, asks."""

    data: LifecycleData
    today: date

    def of(self, model: str, api: ModelLifecycle | None = None) -> ModelLifecycle:
        """``model``'s merged lifecycle; ``api`` is the Models API's answer, if any."""
        return merge(model, (api, *self.data.offline(model)), self.today)

    def warning(self, info: ModelLifecycle) -> str | None:
        return lifecycle_warning(info, self.today)


# ----------------------------------------------------------------------- wording


def lifecycle_warning(info: ModelLifecycle, today: date) -> str | None:
    """One sentence for a human when the model is deprecated or retired on ``today``;
    None otherwise. The source is the caller's to add."""
    state = effective_state(info, today)
    when = info.retires_at.isoformat() if info.retires_at else None
    if state == RETIRED:
        on = f" on {when}" if when else ""
        return f"{info.model} retired{on}: its requests fail at the provider"
    if state != DEPRECATED:
        return None
    if info.retires_at is None:
        return f"{info.model} is deprecated; no retirement date is set"
    days = (info.retires_at - today).days
    return (f"{info.model} is deprecated and retires on {when} "
            f"(in {days} day{'' if days == 1 else 's'})")


class ModelWatch:
    """The mirror's check of the application's models as they arrive in traffic: a line
    once per model and state (a model that retires while the proxy runs is named again),
    for at most ``limit`` ids (they come from traffic). ``today`` is a clock."""

    def __init__(self, data: LifecycleData, today: Callable[[], date],
                 limit: int = 1000) -> None:
        self._data = data
        self._today = today
        self._limit = limit
        self._seen: dict[str, tuple[date, str | None]] = {}

    def check(self, model: str) -> str | None:
        """The line to log for ``model`` now, or None (known, unchanged, or fine)."""
        today = self._today()
        seen = self._seen.get(model)
        if seen is not None and seen[0] == today:
            return None
        if seen is None and len(self._seen) >= self._limit:
            return None
        info = self._data.as_of(today).of(model)
        state = effective_state(info, today)
        self._seen[model] = (today, state)
        if seen is not None and seen[1] == state:
            return None
        line = lifecycle_warning(info, today)
        if line is None:
            return None
        return f"{line} (source: {info.source})" if info.source else line
