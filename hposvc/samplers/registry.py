"""Study spec sampler/pruner sections -> Optuna samplers and pruners.

Each option set is a pydantic model, so an unknown or mistyped option is a 422 that names it.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import optuna
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hposvc.errors import InvalidRequestError
from hposvc.samplers.distributions import grid_values
from hposvc.samplers.percentile_pruner import RememberingPercentilePruner
from hposvc.samplers.tpe import RememberingTPESampler
from hposvc.schemas.studies import PrunerSpec, SamplerSpec, StudySpec

MAX_GRID_POINTS = 1_000_000


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _NoOptions(_Options):
    pass


class _TPEOptions(_Options):
    n_startup_trials: int = Field(default=10, ge=0)
    n_ei_candidates: int = Field(default=24, ge=1)
    multivariate: bool | None = None
    group: bool | None = None
    constant_liar: bool = True


class _GPOptions(_Options):
    n_startup_trials: int = Field(default=10, ge=0)
    deterministic_objective: bool = False


class _CmaEsOptions(_Options):
    n_startup_trials: int = Field(default=1, ge=0)
    sigma0: float | None = Field(default=None, gt=0)
    popsize: int | None = Field(default=None, ge=2)
    use_separable_cma: bool = False
    lr_adapt: bool = False
    consider_pruned_trials: bool = False


class _QMCOptions(_Options):
    qmc_type: Literal["sobol", "halton"] = "sobol"
    scramble: bool = False


class _NSGA2Options(_Options):
    population_size: int = Field(default=50, ge=2)
    mutation_prob: float | None = Field(default=None, ge=0, le=1)
    crossover_prob: float = Field(default=0.9, ge=0, le=1)
    swapping_prob: float = Field(default=0.5, ge=0, le=1)


class _StepOptions(_Options):
    n_startup_trials: int = Field(default=5, ge=0)
    n_warmup_steps: int = Field(default=0, ge=0)
    interval_steps: int = Field(default=1, ge=1)
    n_min_trials: int = Field(default=1, ge=1)


class _PercentileOptions(_StepOptions):
    percentile: float = Field(ge=0, le=100)


class _SHAOptions(_Options):
    min_resource: int = Field(default=1, ge=1)
    reduction_factor: int = Field(default=4, ge=2)
    min_early_stopping_rate: int = Field(default=0, ge=0)
    bootstrap_count: int = Field(default=0, ge=0)


class _HyperbandOptions(_Options):
    min_resource: int = Field(default=1, ge=1)
    max_resource: int = Field(ge=1)
    reduction_factor: int = Field(default=3, ge=2)
    bootstrap_count: int = Field(default=0, ge=0)


class _ThresholdOptions(_Options):
    lower: float | None = None
    upper: float | None = None
    n_warmup_steps: int = Field(default=0, ge=0)
    interval_steps: int = Field(default=1, ge=1)


_SAMPLER_OPTIONS: dict[str, type[_Options]] = {
    "grid": _NoOptions,
    "random": _NoOptions,
    "tpe": _TPEOptions,
    "gp": _GPOptions,
    "cmaes": _CmaEsOptions,
    "qmc": _QMCOptions,
    "nsga2": _NSGA2Options,
}
_PRUNER_OPTIONS: dict[str, type[_Options]] = {
    "none": _NoOptions,
    "median": _StepOptions,
    "percentile": _PercentileOptions,
    "successive_halving": _SHAOptions,
    "hyperband": _HyperbandOptions,
    "threshold": _ThresholdOptions,
}


def _parse(kind: str, name: str, options: dict[str, Any], table: dict[str, type[_Options]]):
    try:
        return table[name].model_validate(options)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        field = f"{kind}.options.{where}" if where else f"{kind}.options"
        raise InvalidRequestError(f"{field}: {first['msg']} ({name})") from exc


def grid_search_space(spec: StudySpec) -> dict[str, list[Any]]:
    """Raises: InvalidRequestError when a parameter cannot be enumerated."""
    space: dict[str, list[Any]] = {}
    total = 1
    for name, param in spec.search_space.ordered():
        try:
            space[name] = grid_values(name, param, max_points=MAX_GRID_POINTS)
        except ValueError as exc:
            raise InvalidRequestError(f"search_space.{name}: {exc}") from exc
        total *= len(space[name])
    if total > MAX_GRID_POINTS:
        raise InvalidRequestError(
            f"search_space: the grid has {total} points, more than {MAX_GRID_POINTS}"
        )
    return space


def build_sampler(spec: StudySpec) -> optuna.samplers.BaseSampler:
    """A fresh sampler for one study cache.

    Its seed is applied per trial by the cache (see cache._reseed), except where Optuna maps a
    seed to a fixed plan (grid order, QMC sequence): those get the spec's seed, or 0.

    Raises:
        InvalidRequestError: bad options or a space the sampler cannot handle.
    """
    sampler: SamplerSpec = spec.sampler
    opts = _parse("sampler", sampler.name, sampler.options, _SAMPLER_OPTIONS)
    n_objectives = len(spec.objectives)
    if sampler.name == "grid":
        return optuna.samplers.GridSampler(grid_search_space(spec), seed=sampler.seed or 0)
    if sampler.name == "random":
        return optuna.samplers.RandomSampler()
    if sampler.name == "tpe":
        assert isinstance(opts, _TPEOptions)
        conditional = any(p.when for p in spec.search_space.root.values())
        multivariate = opts.multivariate if opts.multivariate is not None else n_objectives == 1
        group = opts.group if opts.group is not None else (multivariate and conditional)
        if group and not multivariate:
            raise InvalidRequestError("sampler.options.group: needs multivariate: true")
        return RememberingTPESampler(
            n_startup_trials=opts.n_startup_trials,
            n_ei_candidates=opts.n_ei_candidates,
            multivariate=multivariate,
            group=group,
            constant_liar=opts.constant_liar,
        )
    if sampler.name == "gp":
        assert isinstance(opts, _GPOptions)
        return optuna.samplers.GPSampler(
            n_startup_trials=opts.n_startup_trials,
            deterministic_objective=opts.deterministic_objective,
        )
    if sampler.name == "cmaes":
        assert isinstance(opts, _CmaEsOptions)
        if n_objectives > 1:
            raise InvalidRequestError("sampler.name: cmaes supports a single objective only")
        return optuna.samplers.CmaEsSampler(
            n_startup_trials=opts.n_startup_trials,
            sigma0=opts.sigma0,
            popsize=opts.popsize,
            use_separable_cma=opts.use_separable_cma,
            lr_adapt=opts.lr_adapt,
            consider_pruned_trials=opts.consider_pruned_trials,
        )
    if sampler.name == "qmc":
        assert isinstance(opts, _QMCOptions)
        return optuna.samplers.QMCSampler(
            qmc_type=opts.qmc_type, scramble=opts.scramble, seed=sampler.seed or 0
        )
    assert isinstance(opts, _NSGA2Options)
    return optuna.samplers.NSGAIISampler(
        population_size=opts.population_size,
        mutation_prob=opts.mutation_prob,
        crossover_prob=opts.crossover_prob,
        swapping_prob=opts.swapping_prob,
    )


def resolve_pruner(spec: StudySpec) -> PrunerSpec:
    """The pruner section with defaults that depend on the rest of the spec filled in.

    Hyperband's max_resource defaults to training.max_epochs: Optuna's 'auto' would be fixed
    by whichever trial reports first, differently after every rebuild.
    """
    pruner = spec.pruner
    if pruner.name == "hyperband" and "max_resource" not in pruner.options:
        max_epochs = spec.training.get("max_epochs")
        if isinstance(max_epochs, int) and not isinstance(max_epochs, bool) and max_epochs > 0:
            return PrunerSpec(
                name="hyperband", options={**pruner.options, "max_resource": max_epochs}
            )
    return pruner


def build_pruner(spec: StudySpec) -> optuna.pruners.BasePruner:
    """Raises: InvalidRequestError on bad options."""
    pruner = resolve_pruner(spec)
    opts = _parse("pruner", pruner.name, pruner.options, _PRUNER_OPTIONS)
    if pruner.name == "none":
        return optuna.pruners.NopPruner()
    if pruner.name == "median":  # Optuna's MedianPruner is its PercentilePruner at 50
        return RememberingPercentilePruner(50.0, **opts.model_dump())
    if pruner.name == "percentile":
        return RememberingPercentilePruner(**opts.model_dump())
    if pruner.name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(**opts.model_dump())
    if pruner.name == "hyperband":
        assert isinstance(opts, _HyperbandOptions)
        if opts.max_resource < opts.min_resource:
            raise InvalidRequestError("pruner.options.max_resource: must be >= min_resource")
        return optuna.pruners.HyperbandPruner(**opts.model_dump())
    assert isinstance(opts, _ThresholdOptions)
    if opts.lower is None and opts.upper is None:
        raise InvalidRequestError("pruner.options: threshold needs lower or upper")
    if opts.lower is not None and opts.upper is not None and opts.lower > opts.upper:
        raise InvalidRequestError("pruner.options.lower: must not exceed upper")
    for bound in (opts.lower, opts.upper):
        if bound is not None and not math.isfinite(bound):
            raise InvalidRequestError("pruner.options: bounds must be finite")
    return optuna.pruners.ThresholdPruner(**opts.model_dump())


def validate_spec(spec: StudySpec) -> None:
    """Everything the sampler and pruner would refuse, checked before anything is written.

    Raises:
        InvalidRequestError: naming the offending field.
    """
    build_sampler(spec)
    build_pruner(spec)
