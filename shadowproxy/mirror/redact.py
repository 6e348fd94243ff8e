"""Redaction: scrub secrets and personal data before anything reaches the database.

A :class:`Redactor` is built once from the ``REDACT`` setting and applied to every
request body and both answers, so it is tuned for the common case: precompiled
patterns, a length floor under which a string cannot hold a match, cheap pre-checks
(no ``@``, no email), and quantifiers that are bounded or possessive so a 1 MB string
costs one linear scan per rule, never a backtracking blow-up.

Redacting is idempotent: a replacement can expose a neighbour to a rule (``x@y.com``
glued to a phone number is an email only once the phone is gone), so rules run until
the text stops changing, and replacement tokens are never matched again.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable
from typing import Any

from shadowproxy.settings import BUILTIN_REDACTORS

__all__ = ["Redactor", "luhn_valid"]

SECRET = "[REDACTED:secret]"
EMAIL = "[REDACTED:email]"
PHONE = "[REDACTED:phone]"
CARD = "[REDACTED:card]"
CUSTOM = "[REDACTED]"

# A replacement token, ours or one the text already carried; custom patterns skip it.
_TOKEN = re.compile(r"\[REDACTED(?::[a-z]+)?\]")
# A pass converges in one or two rounds; the cap only guards against a pathological
# custom pattern.
_MAX_ROUNDS = 16

# ---------------------------------------------------------------------------- secrets

# Most patterns start with a literal and check the character before it in a lookbehind
# placed after that literal: a pattern opening on literals lets the regex engine skip
# straight to candidate positions instead of trying every alternative everywhere.
_AFTER_TOKEN_START = r"(?<![A-Za-z0-9_-].)"

_TOKEN_SHAPES = re.compile(
    "|".join(
        rf"{first}{_AFTER_TOKEN_START}{rest}"
        for first, rest in (
            # Anthropic (sk-ant-…) and OpenAI (sk-…, sk-proj-…): long and holding a digit,
            # so "sk-learn" or a kebab-case name is left alone.
            ("s", r"k-(?=[A-Za-z0-9_-]{0,300}[0-9])[A-Za-z0-9_-]{20,}+"),
            ("s", r"k_(?:live|test)_[A-Za-z0-9]{16,}+"),  # Stripe secret key
            ("r", r"k_(?:live|test)_[A-Za-z0-9]{16,}+"),  # Stripe restricted key
            ("A", r"(?:KIA|SIA)[A-Z0-9]{16}(?![A-Za-z0-9])"),  # AWS access key id
            ("A", r"Iza[A-Za-z0-9_-]{35,}+"),  # Google API key
            ("g", r"(?:h[pousr]_[A-Za-z0-9]{36,}+|ithub_pat_[A-Za-z0-9_]{22,}+)"),  # GitHub
            ("x", r"ox[baprs]-[A-Za-z0-9-]{10,}+"),  # Slack
            ("e", r"yJ[A-Za-z0-9_-]{8,}+\.[A-Za-z0-9_-]{2,}+\.[A-Za-z0-9_-]*+"),  # JWT
        )
    )
)

_PRIVATE_KEY = re.compile(
    r"-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY-----(?:"
    # Through the END line (the body scan stops at the next "-----", so it is linear)…
    r"(?:[^-]++|-(?!----))*+-----END[A-Z0-9 ]{0,40}PRIVATE KEY-----"
    # …or, for a truncated block, through its base64 lines.
    r"|(?:(?:\s|\\n)*+[A-Za-z0-9+/=]{16,}+)*+)"
)

# In the patterns below only the credential is replaced; the ``keep`` group survives.
_KEEP = r"\g<keep>" + SECRET

_BEARER = re.compile(
    r"(?P<keep>(?<![A-Za-z0-9_])[Bb]earer[ \t]+)"
    # Real tokens hold a digit; "bearer instruments" is prose.
    r"(?=[A-Za-z0-9._~+/-]{0,512}[0-9])[A-Za-z0-9._~+/-]{12,}+=*+"
)

_URL_PASSWORD = re.compile(
    r"(?P<keep>(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]{1,15}://[^\s:/@\[\]]{1,128}:)"
    r"[^\s/@\[\]]{1,256}+(?=@)"
)

# Names whose value is a credential; ``_`` stands for an optional ``_`` or ``-``.
_CREDENTIAL_NAMES = (
    "password", "passwd", "passphrase", "pwd", "secret", "secret_key", "secret_access_key",
    "client_secret", "api_key", "access_key", "private_key", "access_token", "auth_token",
    "refresh_token", "session_token", "bearer_token", "id_token",
)


def _name_pattern(name: str) -> str:
    return name.replace("_", "[_-]?")


def _credential_name() -> str:
    """``(?i:password|…)`` split by first letter, so the pattern opens on a character set."""
    by_first: dict[str, list[str]] = {}
    for name in sorted(_CREDENTIAL_NAMES, key=len, reverse=True):
        by_first.setdefault(name[0], []).append(_name_pattern(name[1:]))
    firsts = "".join(f"{c.upper()}{c}" for c in by_first)
    rests = "|".join(
        f"(?<=[{c.upper()}{c}])(?i:{'|'.join(names)})" for c, names in by_first.items()
    )
    return rf"[{firsts}](?<![A-Za-z0-9].)(?:{rests})"


# A credential-named JSON key (``"DB_PASSWORD"``); its string value is replaced whole.
_CREDENTIAL_KEY = re.compile(
    r"(?:[A-Za-z0-9]+[_.-])*(?i:" + "|".join(map(_name_pattern, _CREDENTIAL_NAMES)) + ")"
)

_VALUE_CHAR = r"[^\s\"'\[\](){}<>,;&]"
_ASSIGNMENT = re.compile(
    rf"(?P<keep>{_credential_name()}\\?[\"']?[ \t]*[:=][ \t]*(?P<quote>\\?[\"'])?)"
    # Quoted: anything up to the closing quote. Unquoted: must hold a digit, because
    # ``password: str`` and ``api_key=api_key`` are code while ``password=hunter2`` leaks.
    rf"(?(quote)(?!\[REDACTED)[^\"'\n\\]{{1,512}}+(?=\\?[\"'])"
    rf"|(?={_VALUE_CHAR}{{0,64}}[0-9]){_VALUE_CHAR}{{6,256}}+(?!{_VALUE_CHAR}))"
)


# ------------------------------------------------------------------------------ email

_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9_%+-][A-Za-z0-9._%+-]{0,63}+@"
    r"(?![0-9]x\.)"  # icon@2x.png is a file name
    r"[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){0,8}\.[A-Za-z]{2,24}(?![A-Za-z0-9-])"
)

# ------------------------------------------------------------------------------- card

# Digit runs with single spaces or dashes; which part is a card is decided afterwards.
_CARD_CANDIDATE = re.compile(r"[0-9](?<![0-9A-Za-z_.].)(?:[ -]?[0-9]){12,}+(?![0-9A-Za-z_])")
_DIGIT_GROUP = re.compile(r"[0-9]+")
_DOUBLED = str.maketrans("0123456789", "0246813579")  # 2d, minus 9 when two digits


def luhn_valid(digits: str) -> bool:
    """The payment-card checksum over ASCII digits; it keeps order numbers unredacted."""
    from_right = digits[::-1]
    total = sum(from_right[0::2].encode()) + sum(from_right[1::2].translate(_DOUBLED).encode())
    return (total - 48 * len(digits)) % 10 == 0


def _is_card(digits: str) -> bool:
    # Every card network's numbers start with 2-6; timestamps and most ids do not.
    return 13 <= len(digits) <= 19 and digits[0] in "23456" and luhn_valid(digits)


def _card(match: re.Match[str]) -> str:
    """Redact the parts of a digit run printed and checksummed like a card.

    A card is one group of 13-19 digits or is grouped the way cards are printed: four
    digits, then groups of three to six (4-4-4-4, 4-6-5, 4-4-4-4-3). That keeps the
    number of windows tried per group small, so a megabyte of digits stays cheap.
    """
    candidate = match.group()
    groups = [(g.start(), g.end()) for g in _DIGIT_GROUP.finditer(candidate)]
    pieces: list[str] = []
    last = 0
    i = 0
    while i < len(groups):
        found = _card_at(candidate, groups, i)
        if found is None:
            i += 1
            continue
        pieces += (candidate[last : groups[i][0]], CARD)
        last = groups[found][1]
        i = found + 1
    if not pieces:
        return candidate
    pieces.append(candidate[last:])
    return "".join(pieces)


def _card_at(candidate: str, groups: list[tuple[int, int]], first: int) -> int | None:
    """The last group of the longest card starting at group ``first``, if any."""
    start, end = groups[first]
    if end - start != 4:
        return first if _is_card(candidate[start:end]) else None
    digits = candidate[start:end]
    windows: list[tuple[str, int]] = []
    for j in range(first + 1, len(groups)):
        start, end = groups[j]
        if not 3 <= end - start <= 6 or len(digits) + end - start > 19:
            break
        digits += candidate[start:end]
        if len(digits) >= 13:
            windows.append((digits, j))
    for window, last in reversed(windows):
        if _is_card(window):
            return last
    return None


# ------------------------------------------------------------------------------ phone

# +CC then digit groups; the digit count (E.164: at most 15) is checked afterwards.
_INTERNATIONAL_PHONE = re.compile(
    r"\+(?<![0-9A-Za-z_+].)[1-9][0-9]{0,3}(?:[ .-]?\(?[0-9]{1,6}\)?){1,6}+"
)
_NATIONAL_PHONE = re.compile(
    r"(?=[(0-9])(?<![0-9A-Za-z_+.-])(?:"
    # North American: (555) 123-4567, 555-123-4567, 555.123.4567, 1-800-555-1234.
    r"(?:1[ .-])?(?:\([0-9]{3}\) ?|[0-9]{3}[ .-])[0-9]{3}[ .-][0-9]{4}"
    # Trunk-prefixed: 020 7946 0958, (020) 7946 0958, 07700 900123.
    r"|(?:\(0[0-9]{2,4}\) ?|0[0-9]{2,4}[ -])[0-9]{3,4}[ -]?[0-9]{3,4}"
    # A separator is required, so bare 10-digit ids and timestamps are not phones.
    r")(?![0-9A-Za-z_]|[.-][0-9])"
)


def _international_phone(match: re.Match[str]) -> str:
    number = match.group()
    if not 8 <= sum(c.isdigit() for c in number) <= 15:
        return number
    # "(call +1 555 123 4567)": the closing parenthesis is the prose's, not the number's.
    if number.endswith(")") and number.count(")") > number.count("("):
        return PHONE + ")"
    return PHONE


# ---------------------------------------------------------------------------- redactor

_Pass = Callable[[str], str]
_DIGIT = re.compile("[0-9]")


def _rule(
    pattern: re.Pattern[str],
    replacement: str | Callable[[re.Match[str]], str],
    needs: str | re.Pattern[str] | None = None,
) -> _Pass:
    """One pattern, skipped outright when the text lacks something every match needs."""

    def apply(text: str) -> str:
        if isinstance(needs, str) and needs not in text:
            return text
        if isinstance(needs, re.Pattern) and needs.search(text) is None:
            return text
        return pattern.sub(replacement, text)

    return apply


def _custom(pattern: re.Pattern[str]) -> _Pass:
    """A user's pattern, which must not eat into tokens or match the empty string."""

    def apply(text: str) -> str:
        tokens = [m.span() for m in _TOKEN.finditer(text)] if "[REDACTED" in text else []
        starts = [start for start, _ in tokens]
        pieces: list[str] = []
        last = 0
        for match in pattern.finditer(text):
            start, end = match.span()
            if start == end:
                continue
            i = bisect.bisect_left(starts, end) - 1  # last token starting before `end`
            if i >= 0 and tokens[i][1] > start:
                continue
            pieces += (text[last:start], CUSTOM)
            last = end
        if not pieces:
            return text
        pieces.append(text[last:])
        return "".join(pieces)

    return apply


# Built-ins in the order they run (secrets hold digits and @, emails hold digits), each
# with the length of the shortest string it can change.
_BUILTINS: dict[str, tuple[tuple[_Pass, ...], int]] = {
    "secrets": (
        (
            _rule(_TOKEN_SHAPES, SECRET),
            _rule(_PRIVATE_KEY, SECRET, needs="PRIVATE KEY-----"),
            _rule(_BEARER, _KEEP, needs="earer"),
            _rule(_URL_PASSWORD, _KEEP, needs="://"),
            _rule(_ASSIGNMENT, _KEEP),
        ),
        6,
    ),
    "email": ((_rule(_EMAIL, EMAIL, needs="@"),), 6),
    "card": ((_rule(_CARD_CANDIDATE, _card),), 13),
    "phone": (
        (
            _rule(_INTERNATIONAL_PHONE, _international_phone, needs="+"),
            _rule(_NATIONAL_PHONE, PHONE, needs=_DIGIT),
        ),
        9,
    ),
}


class Redactor:
    """The redaction rules named by the ``REDACT`` setting, ready to apply."""

    __slots__ = ("_min_length", "_passes", "_secret_keys")

    def __init__(self, passes: list[_Pass], min_length: int, secret_keys: bool) -> None:
        self._passes = tuple(passes)
        self._min_length = min_length
        self._secret_keys = secret_keys

    @classmethod
    def from_names(cls, names: list[str]) -> Redactor:
        """Build from ``secrets``, ``email``, ``phone``, ``card`` and ``re:PATTERN``."""
        passes: list[_Pass] = []
        min_length = 1 << 30
        named: set[str] = set()
        customs: list[_Pass] = []
        for name in names:
            if name.startswith("re:"):
                try:
                    customs.append(_custom(re.compile(name[3:])))
                except re.error as exc:
                    raise ValueError(f"redactor {name!r} does not compile: {exc}") from exc
                min_length = 1
            elif name in BUILTIN_REDACTORS:
                named.add(name)
            elif name != "none":
                raise ValueError(f"unknown redactor {name!r}")
        for name, (rules, shortest) in _BUILTINS.items():
            if name in named:
                passes += rules
                min_length = min(min_length, shortest)
        return cls(passes + customs, min_length, "secrets" in named)

    def __bool__(self) -> bool:
        return bool(self._passes)

    def text(self, value: str) -> str:
        if len(value) < self._min_length:
            return value
        for _ in range(_MAX_ROUNDS):
            redacted = value
            for apply in self._passes:
                redacted = apply(redacted)
            if redacted == value:
                break
            value = redacted
        return value

    def json(self, value: Any) -> Any:
        """A redacted copy of a JSON value; keys stay, every string value is redacted.

        With ``secrets`` on, a string under a credential-named key (``"password"``,
        ``"api_key"``) is replaced whole: its value has no shape to recognise.
        Walks with an explicit stack, so deeply nested input cannot hit the recursion
        limit.
        """
        if not self._passes:
            return value
        if isinstance(value, str):
            return self.text(value)
        if not isinstance(value, dict | list):
            return value
        root: dict[str, Any] | list[Any] = {} if isinstance(value, dict) else []
        stack: list[tuple[Any, Any]] = [(value, root)]
        while stack:
            source, target = stack.pop()
            if isinstance(source, dict):
                for key, item in source.items():
                    target[key] = self._item(item, stack, key)
            else:
                target.extend(self._item(item, stack, None) for item in source)
        return root

    def _item(self, item: Any, stack: list[tuple[Any, Any]], key: Any) -> Any:
        if isinstance(item, str):
            if (self._secret_keys and item and isinstance(key, str)
                    and _CREDENTIAL_KEY.fullmatch(key) and not _TOKEN.fullmatch(item)):
                return SECRET
            return self.text(item)
        if isinstance(item, dict | list):
            child: dict[str, Any] | list[Any] = {} if isinstance(item, dict) else []
            stack.append((item, child))
            return child
        return item
