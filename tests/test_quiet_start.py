"""What a new user sees when ``serve`` starts: the banner first, no set-up chatter, no
per-request HTTP lines, no platform warnings — and the chatter kept in a file."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import openai

from tests.fakes.providers import SimulatedProvider
from tests.fakes.serve import ANNOUNCE, serve_env


async def test_serve_starts_quietly_with_the_banner_first(
    tmp_path: Path, simulator: SimulatedProvider
) -> None:
    # No DATABASE_URL: the embedded database is created (initdb) and migrated here.
    env = serve_env(tmp_path, primary_url=simulator.url, shadow_base_url=simulator.url,
                    shadow_api_key="sk-ant-shadow-key")
    env.pop("XDG_RUNTIME_DIR", None)  # as in a container or CI job
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shadowproxy", "serve", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    before: list[str] = []
    try:
        async with asyncio.timeout(120):
            while not ANNOUNCE.search(line := await proc.stdout.readline()):
                assert line, f"serve ended before its banner: {before}"
                before.append(line.decode())
            banner = [line.decode()] + [
                (await proc.stdout.readline()).decode() for _ in range(4)]
        match = ANNOUNCE.search(line)
        assert match is not None
        proxy = f"http://{match[1].decode()}:{match[2].decode()}"
        client = openai.AsyncOpenAI(base_url=f"{proxy}/v1", api_key="sk-app", max_retries=0)
        for i in range(3):
            await client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": f"q{i}"}])
        await client.close()
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        rest = (await asyncio.wait_for(proc.stdout.read(), 90)).decode()
        await proc.wait()
    assert before == []
    text = "".join(banner)
    assert "/dashboard" in text and str(tmp_path / "data") in text
    assert f'OpenAI(base_url="{proxy}/v1")' in text
    everything = "".join(before + banner) + rest
    for noise in ("HTTP Request:", "XDG_RUNTIME_DIR", "initdb", "alembic", "pg_ctl"):
        assert noise not in everything, (noise, everything)
    setup_log = (tmp_path / "data" / "logs" / "setup.log").read_text()
    assert "initdb" in setup_log  # kept for when the embedded database will not start
