"""A real study for the dashboard tests, driven through the worker protocol over HTTP.

It ends with complete trials (one early-stopped), a trial the median pruner pruned, a failed
trial with a traceback and a running trial that has reported one epoch.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "workers/training/loop.py", line 88, in fit\n'
    "    loss.backward()\n"
    "RuntimeError: CUDA out of memory (simulated by the dashboard test)"
)


def study_spec(name: str) -> dict:
    return {
        "name": name,
        "objectives": [{"name": "val_loss", "direction": "minimize"}],
        "search_space": {
            "lr": {"type": "float", "low": 1e-4, "high": 0.1, "log": True},
            "layers": {"type": "int", "low": 1, "high": 4},
            "optimizer": {"type": "categorical", "choices": ["sgd", "adam"]},
        },
        "sampler": {"name": "random", "seed": 7},
        "pruner": {"name": "median", "options": {"n_startup_trials": 3, "n_warmup_steps": 2}},
        "budget": {"max_trials": 30, "max_retries": 0, "lease_seconds": 3600},
        "training": {"dataset": "digits", "model": "mlp", "max_epochs": 6},
    }


@dataclass
class Seeded:
    name: str
    workers: list[int]
    complete: list[int]
    early_stopped: int
    pruned: int
    pruned_step: int
    failed: int
    running: int
    running_worker: int


class Protocol:
    """The worker side of the protocol, as a worker daemon speaks it."""

    def __init__(self, http: httpx.Client) -> None:
        self.http = http

    def register(self, name: str, host: str, slots: int, devices: list[str]) -> int:
        body = {"name": name, "host": host, "slots": slots, "devices": devices}
        r = self.http.post("/api/v1/workers", json=body)
        r.raise_for_status()
        return int(r.json()["id"])

    def claim(self, worker: int, study: str) -> dict:
        r = self.http.post("/api/v1/trials/claim", json={"worker_id": worker, "study": study})
        r.raise_for_status()
        return r.json()

    def report(self, worker: int, trial: int, step: int, value: float) -> bool:
        body = {"worker_id": worker, "step": step, "value": value}
        r = self.http.post(f"/api/v1/trials/{trial}/report", json=body)
        r.raise_for_status()
        return bool(r.json()["should_prune"])

    def complete(self, worker: int, trial: int, value: float, attrs: dict) -> None:
        body = {"worker_id": worker, "values": [value], "user_attrs": attrs}
        self.http.post(f"/api/v1/trials/{trial}/complete", json=body).raise_for_status()

    def fail(self, worker: int, trial: int, reason: str) -> None:
        body = {"worker_id": worker, "reason": reason}
        self.http.post(f"/api/v1/trials/{trial}/fail", json=body).raise_for_status()


def _attrs(epochs: int, value: float, stopped: str, worker_slot: int) -> dict:
    return {
        "metrics": {
            "val_loss": value,
            "val_accuracy": 1 - value / 2,
            "test_loss": value * 1.1,
            "test_accuracy": 1 - value / 1.8,
        },
        "stopped": stopped,
        "stop_epoch": epochs,
        "stop_reason": "val_loss did not improve by 0.001 for 2 epochs"
        if stopped == "early_stopped"
        else None,
        "epochs_run": epochs,
        "train_seconds": 0.4 * epochs,
        "slot": worker_slot,
        "device": f"cuda:{worker_slot}",
    }


def seed_study(base_url: str, name: str = "dash-study") -> Seeded:
    """Create the study and drive its trials to every state the dashboard shows."""
    with httpx.Client(base_url=base_url, timeout=30) as http:
        http.post("/api/v1/studies", json=study_spec(name)).raise_for_status()
        proto = Protocol(http)
        gpu = proto.register("gpu-box", "node-1", 2, ["cuda:0", "cuda:1"])
        cpu = proto.register("cpu-box", "node-2", 1, ["cpu"])
        complete: list[int] = []
        for i in range(4):  # good curves; the last (and best) one stops early at epoch 4
            t = proto.claim(gpu, name)
            epochs = 4 if i == 3 else 6
            offset = -0.05 if i == 3 else 0.01 * i
            for step in range(1, epochs + 1):
                if proto.report(gpu, t["id"], step, 1.0 / step + offset):
                    raise AssertionError(f"a good curve was pruned at step {step}")
            value = 1.0 / epochs + offset
            stopped = "early_stopped" if i == 3 else "completed"
            proto.complete(gpu, t["id"], value, _attrs(epochs, value, stopped, i % 2))
            complete.append(t["id"])
        bad = proto.claim(cpu, name)
        step = 0
        for step in range(1, 7):  # a clearly worse curve: the median pruner stops it
            if proto.report(cpu, bad["id"], step, 5.0 + step):
                break
        failed = proto.claim(cpu, name)
        proto.report(cpu, failed["id"], 1, 0.9)
        proto.fail(cpu, failed["id"], TRACEBACK)
        running = proto.claim(gpu, name)
        proto.report(gpu, running["id"], 1, 0.8)
        return Seeded(
            name=name,
            workers=[gpu, cpu],
            complete=complete,
            early_stopped=complete[-1],
            pruned=bad["id"],
            pruned_step=step,
            failed=failed["id"],
            running=running["id"],
            running_worker=gpu,
        )
