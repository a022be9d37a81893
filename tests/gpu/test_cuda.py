"""The training core and a worker's slots on a CUDA device.

CPU-only machines skip these; the CPU runs of the same code are the training-core and e2e
tests. What must hold on a GPU: training runs on the device in every precision, a run resumed
from its checkpoint continues where the lost one stopped, the model a trial uploads loads on a
machine without a GPU, and a worker's slots (forked from a forkserver that imported torch)
start CUDA in each slot and run a study to its end.
"""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import pytest
import torch
from training_helpers import DIGITS_CNN, ScriptedReporter

from workers.training.checkpoint import InMemoryCheckpointStore, from_bytes
from workers.training.pruning import NullReporter
from workers.training.runner import run_trial

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_digits_cnn_trains_on_the_gpu(precision: str) -> None:
    config = {**DIGITS_CNN, "max_epochs": 4, "lr": 3e-3, "precision": precision}
    reporter = ScriptedReporter()
    result = run_trial(config, {}, reporter, None, "cuda")
    assert result.stopped == "completed" and result.epochs_run == 4
    assert all(torch.isfinite(torch.tensor(h["train_loss"])) for h in result.history)
    assert result.metrics["val_accuracy"] > 0.5  # ten classes: chance is 0.1
    assert [step for step, _ in reporter.reports] == [1, 2, 3, 4]


def test_the_uploaded_model_holds_cpu_tensors() -> None:
    result = run_trial({**DIGITS_CNN}, {}, NullReporter(), None, "cuda")
    state = torch.load(io.BytesIO(result.model_state), weights_only=True)  # type: ignore[arg-type]
    assert state and all(t.device.type == "cpu" for t in state.values())


def test_a_gpu_run_resumes_from_its_checkpoint() -> None:
    config = {**DIGITS_CNN, "max_epochs": 5, "checkpoint_every_seconds": 0}
    store = InMemoryCheckpointStore()
    with pytest.raises(ConnectionError):  # the worker is lost while reporting epoch 4
        run_trial(config, {}, ScriptedReporter(crash_at=4), store, "cuda")
    assert from_bytes(store.state)["epoch"] == 3  # type: ignore[arg-type]
    reporter = ScriptedReporter()
    resumed = run_trial(config, {}, reporter, store, "cuda")
    assert resumed.resumed_from_epoch == 3 and resumed.epochs_run == 5
    assert [step for step, _ in reporter.reports] == [4, 5]


def test_a_worker_runs_a_study_on_the_gpu_with_two_slots(
    tmp_path: Path, start_server, start_worker
) -> None:
    server = start_server(f"sqlite:///{tmp_path / 'gpu.db'}")
    api = httpx.Client(base_url=f"{server.url}/api/v1", timeout=30)
    spec = {
        "name": "gpu-cnn",
        "objectives": [{"name": "val_accuracy", "direction": "maximize"}],
        "search_space": {"lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}},
        "sampler": {"name": "random", "seed": 3},
        "budget": {"max_trials": 6, "lease_seconds": 60},
        "training": {**DIGITS_CNN, "max_epochs": 3},
    }
    assert api.post("/studies", json=spec).status_code == 201
    worker = start_worker(
        server.url, "--devices", "auto", "--slots-per-device", "2", "--exit-when-idle", "3"
    )
    assert worker.wait(timeout=240) == 0, worker.log.read_text()[-3000:]
    trials = api.get("/studies/gpu-cnn/trials", params={"limit": 100}).json()["items"]
    assert len(trials) == 6 and all(t["state"] == "complete" for t in trials), trials
    assert {t["user_attrs"]["device"] for t in trials} == {"cuda:0"}
    assert {t["user_attrs"]["slot"] for t in trials} == {0, 1}
    workers = api.get("/workers").json()
    assert any("cuda:0" in w["devices"] for w in workers), workers
