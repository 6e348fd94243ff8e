"""Logs: JSON lines carry the exchange id; credentials are masked even if a message
carries one by mistake."""

from __future__ import annotations

import json
import logging

import pytest

from shadowproxy.logs import scrub, setup_logging
from shadowproxy.settings import Settings


@pytest.fixture(autouse=True)
def restore_root_logger() -> object:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield None
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_lines_carry_the_exchange_id(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging(Settings(log_format="json"), process="mirror")
    logging.getLogger("shadowproxy.mirror").info(
        "pair recorded", extra={"exchange_id": "abc123"})
    line = capsys.readouterr().err.strip().splitlines()[-1]
    doc = json.loads(line)
    assert doc["exchange_id"] == "abc123" and doc["process"] == "mirror"
    assert doc["msg"] == "pair recorded" and doc["level"] == "info"


@pytest.mark.parametrize(
    "message",
    [
        "upstream said: Authorization: Bearer sk-live-abcdef123456",
        "headers {'x-api-key': 'sk-ant-api03-abcdefghijkl'}",
        "cookie=session-token-987654",
        "key sk-proj-abcdefghijklmnop leaked",
    ],
)
def test_credentials_in_messages_are_masked(
    message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    setup_logging(Settings(log_format="text"))
    logging.getLogger("shadowproxy.test").warning(message)
    out = capsys.readouterr().err
    assert "[REDACTED]" in out
    for secret in ("abcdef123456", "abcdefghijkl", "987654", "abcdefghijklmnop"):
        assert secret not in out
    assert scrub(message) != message
