"""``hposvc demo``: the whole service on one machine, on the embedded defaults.

SQLite, a server (in this process), a local CPU worker with 2 slots (a child process), and
the example study ``examples/digits_cnn.yaml``: a CNN on digits, TPE with Hyperband pruning.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn
import yaml
from rich.console import Console
from rich.table import Table

from hposvc.app import create_app
from hposvc.settings import Settings

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "digits_cnn.yaml"


def _start_server(settings: Settings) -> uvicorn.Server:
    config = uvicorn.Config(
        create_app(settings, freeze_startup_heap=True),
        host=settings.host,
        port=settings.port,
        log_level="warning",
    )
    server = uvicorn.Server(config)
    threading.Thread(target=server.run, daemon=True, name="demo-server").start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the server did not start")
        time.sleep(0.05)
    return server


def _free_name(http: httpx.Client, name: str) -> str:
    candidate, n = name, 1
    while http.get(f"/studies/{candidate}").status_code == 200:
        n += 1
        candidate = f"{name}-{n}"
    return candidate


def run_demo(
    *, database_url: str, port: int, slots: int, spec_path: Path, keep_serving: bool
) -> int:
    console = Console()
    settings = Settings(database_url=database_url, port=port)
    server = _start_server(settings)
    base = f"http://{settings.host}:{settings.port}"
    http = httpx.Client(base_url=f"{base}/api/v1", timeout=30)
    spec: dict[str, Any] = yaml.safe_load(spec_path.read_text())
    spec["name"] = _free_name(http, spec["name"])
    created = http.post("/studies", json=spec)
    if created.status_code != 201:
        console.print(f"[red]could not create the study: {created.json()['detail']}")
        return 1
    name = spec["name"]
    console.print(f"[bold]hposvc demo[/]: study [cyan]{name}[/] on {database_url}")
    console.print(f"  dashboard  {base}/")
    console.print(f"  API        {base}/api/v1/studies/{name}   (OpenAPI: {base}/docs)")
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hposvc.cli",
            "worker",
            "--server",
            base,
            "--devices",
            "cpu",
            "--slots-per-device",
            str(slots),
            "--study",
            name,
            "--exit-when-idle",
            "3",
            "--log-level",
            "WARNING",
        ],
    )
    started = time.monotonic()
    last = None
    try:
        while True:
            study = http.get(f"/studies/{name}").json()
            counts = study["counts"]
            best = study["best_trial"]
            line = (
                f"[{time.monotonic() - started:4.0f} s] {study['budget_used']}/"
                f"{study['spec']['budget']['max_trials']}: {counts['complete']} complete, "
                f"{counts['pruned']} pruned, {counts['fail']} failed, {counts['running']} running"
                + (f", best {best['values'][0]:.4f}" if best else "")
            )
            if line[8:] != last:
                console.print(line)
                last = line[8:]
            if study["state"] == "completed" or worker.poll() is not None:
                break
            time.sleep(1.0)
        worker.wait(timeout=120)
    finally:
        if worker.poll() is None:
            worker.terminate()
            worker.wait(timeout=60)
    study = http.get(f"/studies/{name}").json()
    best = study["best_trial"]
    if best is None:
        console.print("[red]no trial completed")
        return 1
    table = Table("parameter", "value", title=f"best trial #{best['number']}")
    for key, value in best["params"].items():
        table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
    console.print(table)
    metrics = best["user_attrs"].get("metrics", {})
    console.print(
        f"best val_accuracy {best['values'][0]:.4f}, "
        f"test accuracy {metrics.get('test_accuracy', float('nan')):.4f} "
        f"({study['counts']['pruned']} of {study['budget_used']} trials pruned, "
        f"{time.monotonic() - started:.0f} s)"
    )
    console.print(f"model: {base}/api/v1/studies/{name}/best-model")
    if keep_serving:
        console.print(f"serving {base}/ until Ctrl-C")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    server.should_exit = True
    return 0
