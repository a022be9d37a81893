"""How a worker's slots share the machine: devices and torch threads per slot."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from hposvc import cli
from workers import devices
from workers.devices import Slot, plan_slots
from workers.settings import WorkerSettings


@pytest.fixture
def eight_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devices.os, "cpu_count", lambda: 8)


@pytest.mark.usefixtures("eight_cores")
def test_cpu_slots_share_the_cores_unless_told() -> None:
    assert plan_slots("cpu", 2) == [Slot(0, "cpu", None, 4), Slot(1, "cpu", None, 4)]
    assert plan_slots("cpu", 3) == [Slot(i, "cpu", None, 2) for i in range(3)]
    assert plan_slots("cpu", 2, threads_per_slot=1) == [
        Slot(0, "cpu", None, 1),
        Slot(1, "cpu", None, 1),
    ]


@pytest.mark.usefixtures("eight_cores")
def test_gpu_slots_take_the_threads_they_are_given() -> None:
    assert [s.threads for s in plan_slots("0,1", 2)] == [2, 2, 2, 2]
    slots = plan_slots("0,1", 1, threads_per_slot=3)
    assert [(s.visible_gpu, s.threads) for s in slots] == [("0", 3), ("1", 3)]


def test_threads_per_slot_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HPOSVC_WORKER_THREADS_PER_SLOT", "1")
    assert WorkerSettings().threads_per_slot == 1
    monkeypatch.setenv("HPOSVC_WORKER_THREADS_PER_SLOT", "0")
    with pytest.raises(ValueError, match="threads_per_slot"):
        WorkerSettings()


def test_the_worker_command_passes_threads_per_slot(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[WorkerSettings] = []
    monkeypatch.setattr("workers.daemon.run_worker", lambda s: seen.append(s) or 0)
    args = ["worker", "--devices", "cpu", "--slots-per-device", "2", "--threads-per-slot", "1"]
    result = CliRunner().invoke(cli.app, args)
    assert result.exit_code == 0, result.output
    assert seen[0].threads_per_slot == 1
    assert seen[0].slots_per_device == 2
    result = CliRunner().invoke(cli.app, ["worker", "--threads-per-slot", "0"])
    assert result.exit_code == 2  # typer refuses it before the worker starts
