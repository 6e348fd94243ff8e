"""Start-up: from ``shadowproxy serve`` to the port accepting and to the first proxied
answer, for ``--workers 1`` and ``--workers 2``, beside a baseline measured in the same run.

    .venv/bin/python bench/bench_startup.py [--rounds 5] [--base main] [--no-migrate]

The baseline is the code at ``--base`` (default: where this branch left main), unpacked
with ``git archive`` into a temporary directory and run by the same interpreter with that
directory first on ``PYTHONPATH`` (so the same installed dependencies, only our code
differs). Both run against one PostgreSQL started by the bench, outside serve (the
"external database" case: ``DATABASE_URL`` set), each in a database of its own that its
own ``migrate`` brought to the head first, so ``serve`` finds the migrations applied
(``--no-migrate`` also skips serve's check). Primary and shadow are the simulator.

Per run, from the moment the process is started:

- **accepting**: the first TCP connect that completes (the kernel finished the handshake:
  the port accepts, whether or not anything serves it), probed every 5 ms;
- **answered**: the first proxied request (a fresh connection each try, every 5 ms) that
  gets its 200; a connection accepted but closed without an answer is counted as
  ``unanswered`` (must be 0);
- **gap** = answered - accepting: how long a load balancer that checks the port would
  send traffic into a wait.

Variants and worker counts are interleaved within each round, so machine noise hits both;
the table shows medians over rounds, with the load average before and after. Both trees
are byte-compiled first, as an installed package is.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import free_port, simulator  # noqa: E402

PY = sys.executable
PROBE_EVERY_S = 0.005
GIVE_UP_S = 60.0
REQUEST = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: bench\r\n"
           b"Authorization: Bearer sk-bench-app\r\nContent-Type: application/json\r\n"
           b"Connection: close\r\nContent-Length: %d\r\n\r\n%s")
BODY = b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "hello"}]}'


@dataclass
class Run:
    accepting: float | None = None
    answered: float | None = None
    ready_message: float | None = None
    unanswered: int = 0

    @property
    def gap(self) -> float | None:
        if self.accepting is None or self.answered is None:
            return None
        return self.answered - self.accepting


@dataclass
class Variant:
    name: str
    pythonpath: Path
    database_url: str
    runs: dict[int, list[Run]] = field(default_factory=dict)


async def _probe_accepting(port: int, started: float, run: Run) -> None:
    while time.perf_counter() - started < GIVE_UP_S:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(PROBE_EVERY_S)
            continue
        run.accepting = time.perf_counter() - started
        writer.close()
        return


async def _probe_answered(port: int, started: float, run: Run) -> None:
    request = REQUEST % (len(BODY), BODY)
    while time.perf_counter() - started < GIVE_UP_S:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(PROBE_EVERY_S)
            continue
        try:
            writer.write(request)
            answer = await asyncio.wait_for(reader.read(), GIVE_UP_S)
        except (OSError, TimeoutError):
            answer = b""
        finally:
            writer.close()
        if answer.startswith(b"HTTP/1.1 200"):
            run.answered = time.perf_counter() - started
            return
        run.unanswered += 1
        await asyncio.sleep(PROBE_EVERY_S)


def _read_ready(fd: int, started: float, run: Run) -> None:
    with os.fdopen(fd, "rb") as pipe:
        if pipe.readline():
            run.ready_message = time.perf_counter() - started


async def one_run(variant: Variant, workers: int, *, primary: str, migrate: bool) -> Run:
    port, admin = free_port(), free_port()
    data_dir = tempfile.mkdtemp(prefix="bench-startup-")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHADOWPROXY_")}
    env.pop("ANTHROPIC_API_KEY", None)
    env.update({
        "PYTHONPATH": str(variant.pythonpath),
        "SHADOWPROXY_PRIMARY_URL": primary, "SHADOWPROXY_SHADOW_BASE_URL": primary,
        "SHADOWPROXY_SHADOW_API_KEY": "sk-ant-bench",
        "SHADOWPROXY_DATABASE_URL": variant.database_url,
        "SHADOWPROXY_PORT": str(port), "SHADOWPROXY_ADMIN_PORT": str(admin),
        "SHADOWPROXY_DATA_DIR": data_dir, "SHADOWPROXY_WORKERS": str(workers),
        "SHADOWPROXY_GRACE_S": "2", "SHADOWPROXY_LOG_LEVEL": "WARNING",
    })
    # Run from the data directory: ``python -m`` puts the working directory first on
    # sys.path, before PYTHONPATH, and the checkout's package would shadow the baseline.
    args = [PY, "-m", "shadowproxy", "serve"] + ([] if migrate else ["--no-migrate"])
    read_end, write_end = os.pipe()
    run = Run()
    log = Path(data_dir) / "serve.log"
    with log.open("wb") as fh:
        started = time.perf_counter()
        proc = await asyncio.create_subprocess_exec(
            *args, "--ready-fd", str(write_end), env=env, cwd=data_dir,
            stdout=subprocess.DEVNULL, stderr=fh, pass_fds=(write_end,))
    os.close(write_end)
    try:
        await asyncio.gather(_probe_accepting(port, started, run),
                             _probe_answered(port, started, run),
                             asyncio.to_thread(_read_ready, read_end, started, run))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 60)
        except TimeoutError:
            proc.kill()
            await proc.wait()
    if run.answered is None:
        print(f"  {variant.name} workers={workers}: no answer; log:\n{log.read_text()}",
              file=sys.stderr)
    shutil.rmtree(data_dir, ignore_errors=True)
    return run


# -- the world both variants run in -------------------------------------------------------


@contextlib.contextmanager
def baseline_tree(ref: str) -> Iterator[tuple[Path, str]]:
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", ref],
                            check=True, capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="bench-startup-base-") as tmp:
        archive = subprocess.Popen(["git", "-C", str(ROOT), "archive", commit],
                                   stdout=subprocess.PIPE)
        subprocess.run(["tar", "-x", "-C", tmp], stdin=archive.stdout, check=True)
        if archive.wait() != 0:
            raise SystemExit(f"git archive {commit} failed")
        yield Path(tmp), commit


@contextlib.contextmanager
def postgres() -> Iterator[str]:
    from shadowproxy.store.embedded import EmbeddedPostgres

    with tempfile.TemporaryDirectory(prefix="bench-startup-pg-") as tmp:
        server = EmbeddedPostgres()
        url = server.start(Path(tmp))
        try:
            yield url
        finally:
            server.stop()


async def make_database(url: str, name: str) -> str:
    import asyncpg
    from sqlalchemy.engine import make_url

    from shadowproxy.store.urls import asyncpg_dsn

    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await conn.execute(f"CREATE DATABASE {name}")
    finally:
        await conn.close()
    return make_url(url).set(database=name).render_as_string(hide_password=False)


def check_code(variant: Variant) -> None:
    """Each variant really runs its own code (a bench that timed one tree twice would
    report no difference, not a wrong one)."""
    found = subprocess.run(
        [PY, "-c", "import shadowproxy; print(shadowproxy.__file__)"],
        env={**os.environ, "PYTHONPATH": str(variant.pythonpath)}, cwd=tempfile.gettempdir(),
        check=True, capture_output=True, text=True).stdout.strip()
    if not Path(found).is_relative_to(variant.pythonpath):
        raise SystemExit(f"{variant.name} would run {found}, not its own tree")


def byte_compile(variant: Variant) -> None:
    """Both trees start from bytecode, as an installed package does (pip compiles at
    install). A shell with PYTHONDONTWRITEBYTECODE=1 and an editable install would
    otherwise compile our modules from source at every start, in every process."""
    subprocess.run([PY, "-m", "compileall", "-q", str(variant.pythonpath / "shadowproxy")],
                   check=True, stdout=subprocess.DEVNULL)


def migrate_with(variant: Variant) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHADOWPROXY_")}
    env.update({"PYTHONPATH": str(variant.pythonpath),
                "SHADOWPROXY_DATABASE_URL": variant.database_url})
    # Not from the checkout: ``python -m`` puts the working directory first on sys.path,
    # before PYTHONPATH, and the checkout's own package would shadow the baseline's.
    subprocess.run([PY, "-m", "shadowproxy", "migrate"], env=env, check=True,
                   stdout=subprocess.DEVNULL, cwd=tempfile.gettempdir())


# -- the table ------------------------------------------------------------------------------


def _median(values: list[float | None]) -> str:
    seen = [v for v in values if v is not None]
    if not seen:
        return "—"
    return f"{statistics.median(seen):.2f}"


def _spread(values: list[float | None]) -> str:
    seen = [v for v in values if v is not None]
    return f"{min(seen):.2f}-{max(seen):.2f}" if seen else "—"


def print_table(variants: list[Variant], worker_counts: list[int], rounds: int) -> None:
    print(f"\nmedians of {rounds} rounds, seconds from start (min-max in brackets)")
    head = (f"{'code':<22} {'workers':>7} {'accepting':>18} {'answered':>18} "
            f"{'gap':>17} {'ready msg':>9} {'unanswered':>10}")
    print(head)
    print("-" * len(head))
    for workers in worker_counts:
        for variant in variants:
            runs = variant.runs.get(workers, [])
            accepting = [r.accepting for r in runs]
            answered = [r.answered for r in runs]
            gaps = [r.gap for r in runs]
            print(f"{variant.name:<22} {workers:>7} "
                  f"{_median(accepting):>6} ({_spread(accepting):>9}) "
                  f"{_median(answered):>6} ({_spread(answered):>9}) "
                  f"{_median(gaps):>5} ({_spread(gaps):>9}) "
                  f"{_median([r.ready_message for r in runs]):>9} "
                  f"{sum(r.unanswered for r in runs):>10}")


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


async def main_async(args: argparse.Namespace) -> None:
    worker_counts = [int(w) for w in args.workers.split(",")]
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(postgres())
        variants = [Variant("this branch", ROOT, await make_database(url, "bench_branch"))]
        if not args.no_baseline:
            tree, commit = stack.enter_context(baseline_tree(args.base))
            variants.insert(0, Variant(f"baseline {commit}", tree,
                                       await make_database(url, "bench_baseline")))
        for variant in variants:
            check_code(variant)
            byte_compile(variant)
            migrate_with(variant)
        sim = stack.enter_context(simulator())
        print(f"cores: {os.cpu_count()}; load average before: {_load()}")
        for index in range(args.rounds):
            order = variants if index % 2 == 0 else variants[::-1]
            for workers in worker_counts:
                for variant in order:
                    run = await one_run(variant, workers, primary=sim.url,
                                        migrate=not args.no_migrate)
                    variant.runs.setdefault(workers, []).append(run)
                    print(f"round {index + 1}: {variant.name:<22} workers={workers} "
                          f"accepting {run.accepting or float('nan'):.2f} s, "
                          f"answered {run.answered or float('nan'):.2f} s, "
                          f"unanswered {run.unanswered}", flush=True)
        print(f"load average after: {_load()}")
        print(f"serve {'--no-migrate' if args.no_migrate else '(migrations already applied)'}"
              f"; DATABASE_URL set (a PostgreSQL the bench started)")
        print_table(variants, worker_counts, args.rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--base", default=None,
                        help="git ref of the baseline (default: merge-base with main)")
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--no-migrate", action="store_true",
                        help="serve --no-migrate (default: serve checks the migrations)")
    parser.add_argument("--no-baseline", action="store_true", help="this branch only")
    args = parser.parse_args()
    if args.base is None:
        args.base = subprocess.run(
            ["git", "-C", str(ROOT), "merge-base", "HEAD", "main"],
            check=True, capture_output=True, text=True).stdout.strip()
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
