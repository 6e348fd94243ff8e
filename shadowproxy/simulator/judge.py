"""The simulator as a judge: a Messages request that forces the tool ``verdict`` gets a
deterministic verdict, so the demo and the tests judge offline with a known truth.

The simulator reads the judge prompt (the format of :mod:`shadowproxy.decision.judge_prompt`),
grades both answers with :func:`~shadowproxy.simulator.variants.grade` against the
conversation (what it would itself have answered there), and names the better one, or
``tie``. ``SimulatorConfig.judge_position_bias`` is the probability of answering "A"
whatever the answers, decided by a hash of the request: a judge with a position bias,
which the two-order protocol must neutralise. ``SimulatorConfig.judge_misses_worse``
makes it miss a share of a tag's subtly wrong answers (the lowest share of the places
that are wrong, so "a third" is a third), calling them as good as the other in both
orders: a bias no position swap reveals, only people's labels.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from shadowproxy.decision.judge_prompt import PromptParts, read_prompt
from shadowproxy.simulator.answers import DISAGREEMENT, Answer, Prompt, SimulatorConfig, ToolUse
from shadowproxy.simulator.variants import Grade, grade, place, prompt_tag, tag_rate

__all__ = ["is_judge_request", "judge_answer", "judge_winner"]

_RANK = {Grade.BAD: 0, Grade.UNKNOWN: 1, Grade.GOOD: 2}


def is_judge_request(body: Mapping[str, Any]) -> bool:
    choice = body.get("tool_choice")
    return isinstance(choice, Mapping) and choice.get("type") == "tool" and (
        choice.get("name") == "verdict") and any(
        isinstance(t, Mapping) and t.get("name") == "verdict" for t in body.get("tools", []))


def _prompt_text(body: Mapping[str, Any]) -> str:
    parts: list[str] = []
    for message in body.get("messages", []):
        content = message.get("content") if isinstance(message, Mapping) else None
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(b["text"] for b in content
                         if isinstance(b, Mapping) and isinstance(b.get("text"), str))
    return "\n".join(parts)


def _biased(parts: PromptParts, bias: float) -> bool:
    """Decided by what the judge reads (not the call's random fence marker), so the same
    pair in the same order gets the same bias in every run."""
    if bias <= 0:
        return False
    seen = json.dumps([parts.conversation, parts.answer_a, parts.answer_b])
    digest = hashlib.sha256(seen.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < bias


def _last_user_turn(conversation: str) -> str:
    """The last user turn of the conversation as the judge prompt renders it."""
    turns = conversation.split("\n\n")
    for turn in reversed(turns):
        if turn.startswith("[user]\n"):
            return turn.removeprefix("[user]\n")
    return ""


def _misses(conversation: str, config: SimulatorConfig) -> bool:
    """This prompt's wrong shadow answer is one the judge is biased to miss."""
    if not config.judge_misses_worse:
        return False
    text = _last_user_turn(conversation)
    controls = f"{text} {config.scripts.get(text, '')}"
    tag = prompt_tag(controls)
    wrong = tag_rate(config.shadow_worse_rate, tag)
    return place(text, controls) < wrong * tag_rate(config.judge_misses_worse, tag)


def judge_winner(body: Mapping[str, Any], config: SimulatorConfig) -> tuple[str, str]:
    """``(winner, reason)`` for a judge request."""
    parts = read_prompt(_prompt_text(body)) or PromptParts("", "", "", None)
    if _biased(parts, config.judge_position_bias):
        return "A", "A reads better."
    grade_a = grade(parts.answer_a, parts.conversation, DISAGREEMENT)
    grade_b = grade(parts.answer_b, parts.conversation, DISAGREEMENT)
    if _RANK[grade_a] == _RANK[grade_b]:
        return "tie", f"Both answers are {grade_a.value}."
    if Grade.BAD in (grade_a, grade_b) and _misses(parts.conversation, config):
        return "tie", "Both answers tell the customer the same thing."
    winner, loser = ("A", "B") if _RANK[grade_a] > _RANK[grade_b] else ("B", "A")
    return winner, f"Answer {loser} does not answer the question that was asked."


def judge_answer(body: Mapping[str, Any], prompt: Prompt, config: SimulatorConfig) -> Answer:
    winner, reason = judge_winner(body, config)
    arguments = {"winner": winner, "reason": reason}
    return Answer("", ToolUse("verdict", arguments), None, "tool_use",
                  max(1, prompt.chars // 4), max(1, len(json.dumps(arguments)) // 4))
