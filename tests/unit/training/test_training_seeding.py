"""Seeding: a CPU trial's streams are torch.manual_seed's, without queueing accelerator seeds."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from workers.training.seeding import seed_everything


def _draws() -> tuple[list[float], list[float], list[float]]:
    return (
        [random.random() for _ in range(3)],
        np.random.rand(3).tolist(),
        torch.rand(3).tolist(),
    )


@pytest.mark.parametrize("device", [None, "cpu"])
def test_seeding_repeats_every_stream(device: str | None) -> None:
    seed_everything(11, device)
    first = _draws()
    seed_everything(11, device)
    assert _draws() == first
    seed_everything(12, device)
    assert _draws() != first


def test_a_cpu_trial_draws_what_torch_manual_seed_gives() -> None:
    torch.manual_seed(5)
    expected = torch.rand(4)
    seed_everything(5, "cpu")
    assert torch.equal(torch.rand(4), expected)


def test_only_trials_off_the_cpu_seed_the_accelerators(monkeypatch: pytest.MonkeyPatch) -> None:
    seeded: list[int] = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", seeded.append)
    seed_everything(3, "cpu")
    assert seeded == []
    seed_everything(3, "cuda:0")
    seed_everything(3)
    assert seeded == [3, 3]
