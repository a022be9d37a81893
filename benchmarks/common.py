"""Shared pieces of the benchmark scripts: databases, a server process, machine facts."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text

REPO = Path(__file__).resolve().parents[1]
PG_ADMIN_URL = os.environ.get(
    "HPOSVC_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
RESULTS = REPO / "benchmarks" / "RESULTS.md"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import optuna
    import sqlalchemy
    import torch

    return (
        f"{cpu}, {os.cpu_count()} cores; Python {platform.python_version()}, "
        f"optuna {optuna.__version__}, torch {torch.__version__}, "
        f"SQLAlchemy {sqlalchemy.__version__}"
    )


@contextmanager
def database(kind: str) -> Iterator[str]:
    """A fresh empty database URL of ``kind`` (sqlite | postgresql), removed afterwards."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite:///{tmp}/bench.db"
        return
    name = f"hposvc_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def server(database_url: str, **env: str) -> Iterator[str]:
    """``hposvc server`` as a process; yields its base URL."""
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hposvc.cli", "server"],
            env={
                **os.environ,
                "HPOSVC_DATABASE_URL": database_url,
                "HPOSVC_PORT": str(port),
                "HPOSVC_LOG_LEVEL": "WARNING",
                "HPOSVC_ARTIFACTS_DIR": f"{tmp}/artifacts",
                **env,
            },
            cwd=REPO,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("server did not start")
                time.sleep(0.1)
            yield url
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def percentiles(samples: list[float]) -> tuple[float, float, float]:
    """p50, p95, p99 in milliseconds."""
    if not samples:
        return (float("nan"),) * 3
    ordered = sorted(samples)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return at(0.50), at(0.95), at(0.99)


def write_section(title: str, body: str) -> None:
    """Replace (or append) the ``## title`` section of benchmarks/RESULTS.md."""
    text_ = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    marker = f"## {title}\n"
    section = f"{marker}\n{body.strip()}\n"
    if marker in text_:
        start = text_.index(marker)
        nxt = text_.find("\n## ", start + len(marker))
        text_ = text_[:start] + section + (text_[nxt:] if nxt != -1 else "")
    else:
        text_ = text_.rstrip() + "\n\n" + section
    RESULTS.write_text(text_)


def synthetic_trial(
    rng: Any, epochs: int
) -> tuple[dict[str, Any], str, list[float], float | None]:
    """Params, final state, learning curve and value of a made-up finished trial (seeding)."""
    lr = 10 ** rng.uniform(-4, -1)
    params = {"lr": lr, "layers": rng.randint(1, 4), "optimizer": rng.choice(["sgd", "adam"])}
    base = abs(lr - 0.01) * 10 + 0.05 * params["layers"] + rng.random() * 0.1
    kind = rng.random()
    state = "complete" if kind < 0.7 else "pruned" if kind < 0.9 else "fail"
    n = epochs if state == "complete" else rng.randint(2, 6)
    curve = [base + 1.0 / (e + 1) for e in range(1, n + 1)]
    return params, state, curve, (curve[-1] if state != "fail" else None)
