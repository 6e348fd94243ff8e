"""Logs: JSON lines carry the exchange id; credentials are masked even if a message
carries one by mistake."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import openai
import pytest

from shadowproxy.logs import scrub, setup_logging
from shadowproxy.settings import Settings
from tests.fakes.providers import SimulatedProvider
from tests.fakes.serve import running_serve


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


@pytest.mark.parametrize(
    "message",
    [
        "{'Proxy-Authorization': 'Basic dXNlcjpodW50ZXIy'}",
        '{"Ocp-Apim-Subscription-Key": "0123456789abcdef0123"}',
        "x-goog-api-key=AIzaSyA-0123456789abcdefghijklmnopqrstu",
        "Set-Cookie: session=s3cr3t-value; HttpOnly",
        "Request options: {'json_data': {'metadata': {'api_key': 'plainvalue'}}}",
        "{'token': 'tokenvalue', 'nested': {'pass': 'passvalue'}}",
    ],
)
def test_every_credential_form_is_masked_in_both_formats(
    message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for fmt in ("text", "json"):
        setup_logging(Settings(log_format=fmt))
        logging.getLogger("some.library").warning("%s", message)
        out = capsys.readouterr().err
        for secret in ("dXNlcjpodW50ZXIy", "0123456789abcdef0123", "0123456789abcdefghij",
                       "s3cr3t-value", "plainvalue", "tokenvalue", "passvalue"):
            assert secret not in out, (fmt, out)
        assert "REDACTED" in out


def test_a_traceback_is_masked_in_both_formats(capsys: pytest.CaptureFixture[str]) -> None:
    for fmt in ("text", "json"):
        setup_logging(Settings(log_format=fmt))
        try:
            raise ValueError("bad header line b'X-Api-Key: sk-ant-api03-abcdefghijkl\\r'")
        except ValueError:
            logging.getLogger("aiohttp.server").exception("Error handling request")
        out = capsys.readouterr().err
        assert "abcdefghijkl" not in out and "ValueError" in out, out


APP_KEY = "sk-app-live-key-CRLEAK0123456789"
OTHER_KEYS = ("apim-key-0123456789abcdef", "cookie-value-0123456789")


async def _raw_request(url: str, header_lines: bytes) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    body = b'{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}'
    writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n" + header_lines
                 + b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
                 + body)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 30)
    writer.close()
    return answer


@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_a_cr_in_authorization_leaves_no_key_and_one_warning_line(
    tmp_path: Path, simulator: SimulatedProvider, database_url: str, log_format: str
) -> None:
    """A Windows ``.env`` leaves a CR at the end of the key: aiohttp refuses the request
    (400) and its traceback used to quote the header line, key included."""
    async with running_serve(
        tmp_path, primary_url=simulator.url, shadow_base_url=simulator.url,
        shadow_api_key="sk-ant-shadow-key-ZYXWVU9876543210", database_url=database_url,
        log_level="DEBUG", log_format=log_format,
    ) as served:
        for _ in range(5):
            answer = await _raw_request(
                served.url, b"Authorization: Bearer " + APP_KEY.encode() + b"\r\r\n")
            assert answer.split(b"\r\n")[0].endswith(b" 400 Bad Request")
        await _raw_request(served.url, b"Ocp-Apim-Subscription-Key: " + OTHER_KEYS[0].encode()
                           + b"\r\r\n")
        await _raw_request(served.url, b"Cookie: s=" + OTHER_KEYS[1].encode() + b"\r\r\n")
        # A good request at DEBUG: the SDKs log whole request options.
        client = openai.AsyncOpenAI(base_url=f"{served.url}/v1", api_key=APP_KEY,
                                    max_retries=0)
        await client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "my key is " + APP_KEY}],
            extra_headers={"Cookie": f"s={OTHER_KEYS[1]}"})
        log = served.log()
    for secret in (APP_KEY, *OTHER_KEYS, "CRLEAK0123456789"):
        assert secret not in log, log[-4000:]
    assert "Traceback" not in log
    warnings = [line for line in log.splitlines() if "malformed request" in line]
    assert len(warnings) == 1, warnings  # seven in ten seconds: one line
    if log_format == "json":
        assert json.loads(warnings[0])["level"] == "warning"
    else:
        assert " WARNING " in warnings[0]


def test_a_record_that_cannot_be_formatted_never_raises_in_the_caller(
    capsys: pytest.CaptureFixture[str]
) -> None:
    setup_logging(Settings(log_format="text"))
    logging.getLogger("some.library").warning("%d items", "not a number")
    assert "unloggable record from some.library" in capsys.readouterr().err
