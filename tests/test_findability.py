"""What a new user finds after the demo: the commands it prints work as printed once the
demo has ended (its database stopped), and ``simulate`` serves both wire formats."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import anthropic
import openai

from shadowproxy.simulator.demo_next import next_steps
from shadowproxy.store.embedded import EmbeddedPostgres
from shadowproxy.store.migrate import upgrade
from tests.fakes.database import make_pair
from tests.fakes.traffic import store


def shell(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHADOWPROXY_")}
    # The printed commands say "shadowproxy": the one installed beside this Python.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(["bash", "-c", command], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=120)


async def test_the_demo_s_closing_commands_work_after_it_ends(tmp_path: Path) -> None:
    data_dir = tmp_path / "data" / "demo"
    embedded = EmbeddedPostgres()
    url = await asyncio.to_thread(embedded.start, data_dir)
    try:
        await upgrade(url)
        await store(url, [make_pair(tag="support"), make_pair(tag="support"),
                          make_pair(tag="billing")])
    finally:
        await asyncio.to_thread(embedded.stop)  # as the demo leaves it

    text = next_steps(data_dir, tmp_path / "shadowproxy-demo.html")
    lines = {line.split(":", 1)[0].strip(): line.split(":", 1)[1].strip()
             for line in text.splitlines()[1:]}
    assert lines["open the report"] == (tmp_path / "shadowproxy-demo.html").as_uri()

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    query = shell(lines["query the pairs"], elsewhere)
    assert query.returncode == 0, query.stderr
    assert "support" in query.stdout and "billing" in query.stdout

    export = shell(lines["export the pairs"], elsewhere)
    assert export.returncode == 0, export.stderr
    assert (elsewhere / "demo-pairs.parquet").stat().st_size > 0
    assert "wrote 3 pairs" in export.stderr
    assert not (data_dir / "pg" / "postmaster.pid").exists()  # stopped again after each


async def test_simulate_serves_both_wire_formats(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shadowproxy", "simulate", "--port", str(port),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert proc.stderr is not None
    try:
        first = (await asyncio.wait_for(proc.stderr.readline(), 60)).decode()
        assert f"http://127.0.0.1:{port}" in first
        url = f"http://127.0.0.1:{port}"
        for _ in range(100):  # the line comes before the socket is bound
            try:
                await asyncio.open_connection("127.0.0.1", port)
                break
            except OSError:
                await asyncio.sleep(0.1)
        oa = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="any", max_retries=0)
        answer = await oa.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hello"}])
        assert answer.choices[0].message.content == "Answer to: hello"
        an = anthropic.AsyncAnthropic(base_url=url, api_key="any", max_retries=0)
        message = await an.messages.create(model="claude-haiku-4-5", max_tokens=50,
                                           messages=[{"role": "user", "content": "hello"}])
        assert json.loads(message.model_dump_json())["content"][0]["text"] == "Answer to: hello"
        await oa.close()
        await an.close()
    finally:
        proc.send_signal(signal.SIGINT)
        await asyncio.wait_for(proc.wait(), 30)
