"""User objectives: ``package.module:function`` (or ``path/file.py:function``) called as
``function(params, ctx)`` with the same report/prune channel as the built-in loop.

The function returns a float, a list of floats (the objective values), or a dict with
``values`` (or ``value``) plus any metrics. Its params are not validated: it owns them.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import math
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workers.training.checkpoint import from_bytes, to_bytes
from workers.training.pruning import TrialPruned
from workers.training.results import TrialResult
from workers.training.seeding import seed_everything

if TYPE_CHECKING:
    from workers.training.checkpoint import CheckpointStore
    from workers.training.pruning import Reporter

logger = logging.getLogger(__name__)


class TrialContext:
    """What a user objective gets besides its params.

    Attributes:
        training: the study's ``training`` section.
        device: the torch device string the trial should use.
    """

    def __init__(
        self,
        training: Mapping[str, Any],
        device: str,
        reporter: Reporter,
        checkpoints: CheckpointStore | None,
    ) -> None:
        self.training = dict(training)
        self.device = device
        self._reporter = reporter
        self._checkpoints = checkpoints
        self.reports: list[tuple[int, float]] = []

    def report(self, step: int, value: float) -> None:
        """Report an intermediate objective value.

        Raises:
            TrialPruned: the server says to prune; let it propagate out of the function.
        """
        value = float(value)
        self.reports.append((int(step), value))
        if self._reporter.report(int(step), value):
            raise TrialPruned(f"pruned by the server at step {step} (value {value:.6g})")

    @property
    def should_checkpoint(self) -> bool:
        """True when the worker keeps checkpoints for this trial."""
        return self._checkpoints is not None

    def save_checkpoint(self, obj: Any) -> None:
        """Store ``obj`` (anything torch.save takes) as the trial's checkpoint."""
        if self._checkpoints is not None:
            self._checkpoints.save(to_bytes(obj))

    def load_checkpoint(self) -> Any | None:
        """The object last saved by this trial (before a worker was lost), or None."""
        blob = self._checkpoints.load() if self._checkpoints is not None else None
        return None if blob is None else from_bytes(blob, trusted=True)


def load_function(path: str) -> Callable[..., Any]:
    """Import ``package.module:function`` or ``some/file.py:function``.

    Raises:
        ValueError: it cannot be imported or is not callable (names ``entrypoint``).
    """
    module_name, sep, attr = path.rpartition(":")
    if not sep or not module_name or not attr:
        raise ValueError(
            f"training config key 'entrypoint': expected module:function, got {path!r}"
        )
    try:
        if module_name.endswith(".py"):
            file = Path(module_name)
            spec = importlib.util.spec_from_file_location(file.stem, file)
            if spec is None or spec.loader is None or not file.is_file():
                raise ImportError(f"no file {file}")
            module = importlib.util.module_from_spec(spec)
            sys.modules.setdefault(file.stem, module)
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
        function = getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"training config key 'entrypoint': cannot import {path}: {exc}") from exc
    if not callable(function):
        raise ValueError(f"training config key 'entrypoint': {path} is not callable")
    return function


def run_entrypoint(
    training: Mapping[str, Any],
    params: Mapping[str, Any],
    reporter: Reporter,
    checkpoints: CheckpointStore | None,
    device: str,
) -> TrialResult:
    """Run a user objective as one trial; a TrialPruned from it ends as stopped="pruned".

    Raises:
        ValueError: bad entrypoint or return value.
        Exception: whatever the user function raises (the trial fails).
    """
    path = params.get("entrypoint", training.get("entrypoint"))
    if not isinstance(path, str):
        raise ValueError(f"training config key 'entrypoint': expected a string, got {path!r}")
    function = load_function(path)
    seed = params.get("seed", training.get("seed"))
    if isinstance(seed, int) and not isinstance(seed, bool):
        seed_everything(seed)
    ctx = TrialContext(training, device, reporter, checkpoints)
    try:
        returned = function(dict(params), ctx)
    except TrialPruned as exc:
        step, value = ctx.reports[-1] if ctx.reports else (0, math.nan)
        logger.info("user objective %s pruned at step %d", path, step)
        return TrialResult(
            values=[value],
            metrics={},
            epochs_run=step,
            stopped="pruned",
            stop_epoch=step,
            stop_reason=str(exc),
            history=_history(ctx),
        )
    values, metrics = _parse_return(path, returned)
    last = ctx.reports[-1][0] if ctx.reports else 0
    return TrialResult(
        values=values,
        metrics=metrics,
        epochs_run=last,
        stopped="completed",
        stop_epoch=last,
        stop_reason=f"{path} returned",
        history=_history(ctx),
    )


def _history(ctx: TrialContext) -> list[dict[str, Any]]:
    return [{"step": step, "value": value} for step, value in ctx.reports]


def _parse_return(path: str, returned: Any) -> tuple[list[float], dict[str, float]]:
    metrics: dict[str, float] = {}
    if isinstance(returned, Mapping):
        raw = dict(returned)
        values = raw.pop("values", raw.pop("value", None))
        metrics = {str(k): float(v) for k, v in raw.items() if isinstance(v, int | float)}
        returned = values
    if isinstance(returned, int | float) and not isinstance(returned, bool):
        return [float(returned)], metrics
    if (
        isinstance(returned, list | tuple)
        and returned
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in returned)
    ):
        return [float(v) for v in returned], metrics
    raise ValueError(
        f"entrypoint {path} must return a number, a list of numbers or a dict with 'values'; "
        f"got {returned!r}"
    )
