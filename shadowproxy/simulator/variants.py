"""Shadow answers with a known truth: the canonical answer, equivalent paraphrases, and
subtly wrong variants, chosen deterministically per prompt.

The simulator's canonical answer to a question ``q`` is ``Answer to: q[:60]``. For
``claude-haiku*`` models, :func:`shadow_sentence` replaces it, for a share of prompts set
in :class:`~shadowproxy.simulator.SimulatorConfig`, by

* a **paraphrase** (``shadow_paraphrase_rate``): other words, the same answer, so a
  judge should call it ``equivalent``;
* a **subtly wrong** variant (``shadow_worse_rate``, per tag): one digit of the question
  changed, or the answer quietly negated, so a judge should call it ``worse``.

The tag comes from the prompt (``#tag=support``; the proxy strips the tag header before
the shadow sees the request), or from the control words a prompt is scripted to carry
(``SimulatorConfig.scripts``: the demo's prompts read like real ones); ``"*"`` in
``shadow_worse_rate`` is the rate for any tag.
Which prompts get a variant: ``#seq=N`` in the prompt places it on a low-discrepancy
sequence (N times the golden ratio, modulo 1), so N consecutive prompts hit a rate
within about 1/N; without it, a hash of the prompt decides.

:func:`grade` is the inverse, used by the simulated judge: an answer is ``good``
(canonical or a paraphrase of a question in the conversation), ``bad`` (a wrong variant,
an answer to a question nobody asked, or the ``#disagree`` answer) or ``unknown``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from enum import StrEnum

__all__ = [
    "Grade",
    "Kind",
    "canonical",
    "grade",
    "paraphrase",
    "place",
    "prompt_tag",
    "shadow_kind",
    "shadow_sentence",
    "subtly_wrong",
    "tag_rate",
]

_GOLDEN = 0.6180339887498949
_TAG = re.compile(r"#tag=([\w.-]+)")
_SEQ = re.compile(r"#seq=(\d+)")
_PARAPHRASES = ("Here is the answer to: {q}", "In short, the answer to: {q}",
                "Answer to: {q} (hope this helps)")
_NEGATED = "Answer to: {q}, except that the opposite is true"
_DIGIT = re.compile(r"\d")


class Kind(StrEnum):
    CANONICAL = "canonical"
    PARAPHRASE = "paraphrase"
    WRONG = "wrong"


class Grade(StrEnum):
    GOOD = "good"
    BAD = "bad"
    UNKNOWN = "unknown"


def canonical(question: str) -> str:
    return f"Answer to: {question[:60]}"


def paraphrase(question: str, n: int = 0) -> str:
    return _PARAPHRASES[n % len(_PARAPHRASES)].format(q=question[:60])


def _corrupt(text: str) -> str | None:
    """The text with its first digit changed, or None when it has no digit."""
    match = _DIGIT.search(text)
    if match is None:
        return None
    digit = str((int(match[0]) + 1) % 10)
    return text[: match.start()] + digit + text[match.end():]


def subtly_wrong(question: str) -> str:
    q = question[:60]
    changed = _corrupt(q)
    return f"Answer to: {changed}" if changed is not None else _NEGATED.format(q=q)


def prompt_tag(text: str) -> str | None:
    match = _TAG.search(text)
    return match[1] if match else None


def _position(text: str, controls: str | None = None) -> float:
    """Where this prompt falls in [0, 1): the rates are shares of this interval."""
    if match := _SEQ.search(text if controls is None else controls):
        return (int(match[1]) * _GOLDEN) % 1.0
    digest = hashlib.sha256(text.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def place(text: str, controls: str | None = None) -> float:
    """Where this prompt falls in [0, 1): below the tag's worse rate it is wrong."""
    return _position(text, controls)


def tag_rate(rates: Mapping[str, float], tag: str | None) -> float:
    """The rate for ``tag`` in a per-tag table ("*" for any tag)."""
    return rates.get(tag, rates.get("*", 0.0)) if tag else rates.get("*", 0.0)


def shadow_kind(text: str, worse_rate: Mapping[str, float], paraphrase_rate: float,
                *, controls: str | None = None) -> Kind:
    """``controls``: where ``#tag=``/``#seq=`` are read (the text plus a scripted prompt's
    control words, :attr:`SimulatorConfig.scripts`); the text itself by default."""
    tag = prompt_tag(text if controls is None else controls)
    worse = tag_rate(worse_rate, tag)
    u = _position(text, controls)
    if u < worse:
        return Kind.WRONG
    if u < worse + paraphrase_rate:
        return Kind.PARAPHRASE
    return Kind.CANONICAL


def shadow_sentence(text: str, worse_rate: Mapping[str, float], paraphrase_rate: float,
                    *, controls: str | None = None) -> str | None:
    """The shadow's sentence for this prompt, or None for the canonical one."""
    kind = shadow_kind(text, worse_rate, paraphrase_rate, controls=controls)
    if kind == Kind.WRONG:
        return subtly_wrong(text)
    if kind == Kind.PARAPHRASE:
        return paraphrase(text, int(_position(text, controls) * 1000))
    return None


# Most specific first: "Answer to: {q}" would also match a paraphrase's longer text.
_GOOD_FORMS = [re.compile(re.escape(p).replace(re.escape("{q}"), "(?P<q>.*)") + r"\Z",
                          re.DOTALL) for p in (*_PARAPHRASES, "Answer to: {q}")]
_NEGATED_FORM = re.compile(
    re.escape(_NEGATED).replace(re.escape("{q}"), "(?P<q>.*)") + r"\Z", re.DOTALL)


def _sentence(answer: str) -> str:
    stripped = answer.strip()
    if stripped.startswith("{"):
        try:
            value = json.loads(stripped)
        except ValueError:
            return stripped
        if isinstance(value, dict) and isinstance(value.get("answer"), str):
            return str(value["answer"])
    return stripped


def grade(answer: str, conversation: str, disagreement: str) -> Grade:
    """How the simulator rates an answer given the conversation it answers."""
    sentence = _sentence(answer)
    if sentence == disagreement:
        return Grade.BAD
    if _NEGATED_FORM.match(sentence):
        return Grade.BAD
    for form in _GOOD_FORMS:
        match = form.match(sentence)
        if match is not None:
            return Grade.GOOD if match["q"] in conversation else Grade.BAD
    return Grade.UNKNOWN
