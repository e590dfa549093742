"""The batched runner: N virtual cells x N dose schedules -> trajectories `[N, T, S]`.

The parent process turns draws and doses into plain numbers (parameter values per run and
segment), so a worker only runs a compiled model piecewise: set this segment's parameters,
integrate to the next boundary (state carries over), apply boluses, repeat. Runs are
split into chunks spread over worker processes through `biowm.core.executor`; each
worker compiles the model once and keeps it for every chunk it gets. No randomness is drawn
in the workers, so sequential and parallel runs give identical numbers.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from biowm.core.errors import InvalidInputError
from biowm.core.executor import make_executor, ordered
from biowm.core.space import Channel, Space
from biowm.core.trajectories import SUBJECT_COLUMN, TIME_COLUMN, Trajectories
from biowm.domains.pathway.interventions import Bolus, DoseSchedule, InitialFold, Knockout
from biowm.domains.pathway.population import STATIC_PREFIX, ParameterDraws
from biowm.domains.pathway.sbml import PathwayModel, compile_sbml

# A worker process starts in ~2 s (torch, libroadrunner, compiling the model), the work of
# ~1,000 runs; with fewer runs each, extra workers cost more than they save.
MIN_RUNS_PER_WORKER = 250


@dataclass
class PopulationResult:
    """Simulated virtual cells: `obs[n, t, s]` of `species` at `times`, the doses in effect
    `doses[n, t, a]` of `schedule.controls`, the parameter draws, and which runs failed
    (integrator errors; their rows are NaN)."""

    times: np.ndarray
    obs: np.ndarray
    species: tuple[str, ...]
    doses: np.ndarray
    schedule: DoseSchedule
    draws: ParameterDraws
    failed: np.ndarray
    time_unit: str
    model_name: str = ""
    seconds: float = 0.0

    def __len__(self) -> int:
        return self.obs.shape[0]

    def to_trajectories(self) -> Trajectories:
        """obs = species concentrations, actions = doses in effect, static = log-ratio draws."""
        controls = self.schedule.controls
        obs_space = Space(tuple(Channel(s, "model concentration units") for s in self.species))
        action_space = Space(tuple(Channel(c.name, c.unit, *c.dose_range) for c in controls))
        static_space = Space(tuple(Channel(f"{STATIC_PREFIX}{p}", "log ratio to model value")
                                   for p in self.draws.names))
        columns = [SUBJECT_COLUMN, TIME_COLUMN, *obs_space.names, *action_space.names,
                   *static_space.names]
        clashes = sorted({c for c in columns if columns.count(c) > 1})
        if clashes:
            raise InvalidInputError(f"column names clash in the trajectory file: {clashes}")
        n, t = self.obs.shape[:2]
        return Trajectories(
            times=torch.from_numpy(np.broadcast_to(self.times, (n, t)).copy()),
            obs=torch.from_numpy(self.obs.astype(np.float32)),
            actions=torch.from_numpy(self.doses.astype(np.float32)),
            mask=torch.from_numpy(np.isfinite(self.obs)),
            static=torch.from_numpy(self.draws.log_ratio.astype(np.float32)),
            subject_ids=[f"cell{i}" for i in range(n)],
            obs_space=obs_space,
            action_space=action_space,
            static_space=static_space,
            time_unit=self.time_unit,
        )


@dataclass(frozen=True)
class _Interval:
    """One stretch of constant parameters between breakpoints (segment bounds, boluses)."""

    start: float
    end: float
    segment: int
    boluses: tuple[tuple[str, float], ...]
    times: tuple[float, ...]  # what to ask the integrator for: start, grid points, end
    rows: np.ndarray  # which of those are output grid points
    grid: np.ndarray  # their index in the output grid


@dataclass(frozen=True)
class _Chunk:
    """Picklable work for one worker call: `values[r, k, q]` of `parameters[q]`."""

    sbml: str
    key: str
    knockouts: tuple[str, ...]
    observe: tuple[str, ...]
    n_times: int
    plan: tuple[_Interval, ...]
    parameters: tuple[str, ...]
    values: np.ndarray
    initial: tuple[tuple[str, float], ...]


def simulate_population(
    model: PathwayModel,
    times: Sequence[float] | np.ndarray,
    *,
    observe: Sequence[str] | None = None,
    draws: ParameterDraws | None = None,
    schedule: DoseSchedule | None = None,
    knockouts: Sequence[Knockout] = (),
    initial_folds: Sequence[InitialFold] = (),
    boluses: Sequence[Bolus] = (),
    workers: int | None = None,
    chunk_size: int | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> PopulationResult:
    """Simulate one run per virtual cell, from the model's initial state at t = 0.

    `times` is the output grid (model time units, increasing, >= 0). `draws` (N cells) and
    `schedule` (N runs, boundaries starting at 0 and reaching `times[-1]`) must agree on
    N; either may be omitted (nominal parameters / no controls). Knockouts, initial folds
    and boluses apply to every run. `workers` defaults to `os.cpu_count()`; 1 runs in this
    process, and small batches use fewer workers. `on_progress(k)` reports k finished runs.
    """
    import time as _time

    started = _time.perf_counter()
    grid = np.asarray(times, dtype=np.float64)
    if grid.ndim != 1 or grid.size < 1 or not np.all(np.isfinite(grid)) or grid[0] < 0 \
            or np.any(np.diff(grid) <= 0):
        raise InvalidInputError("times must be a non-empty increasing grid of times >= 0")
    observed = model.check_species(model.species if observe is None else observe,
                                   "species to observe")
    n = draws.n if draws is not None else schedule.n_runs if schedule is not None else 1
    draws = draws if draws is not None else ParameterDraws.nominal(n)
    if schedule is None:
        schedule = DoseSchedule((), np.array([0.0, max(float(grid[-1]), 1e-9)]),
                                np.zeros((n, 1, 0)))
    if schedule.n_runs != draws.n:
        raise InvalidInputError(f"{draws.n} parameter draws but {schedule.n_runs} dose "
                                "schedules; give one of each per virtual cell")
    if schedule.boundaries[0] != 0 or schedule.boundaries[-1] < grid[-1]:
        raise InvalidInputError(f"dose schedule covers [{schedule.boundaries[0]:g}, "
                                f"{schedule.boundaries[-1]:g}] but runs span [0, {grid[-1]:g}]")
    model.check_parameters(draws.names, "uncertain parameter")
    targets, factors = schedule.multipliers()
    model.check_parameters(targets, "intervention target parameter")
    knocked = model.check_species([k.species for k in knockouts], "knockout species",
                                  dynamic=True)
    model.check_species([f.species for f in initial_folds], "overexpressed species",
                        dynamic=True)
    model.check_species([b.species for b in boluses], "bolus species", dynamic=True)
    for bolus in boluses:
        if bolus.time >= grid[-1]:
            raise InvalidInputError(f"bolus of {bolus.species} at t={bolus.time:g} must come "
                                    f"before the last output time {grid[-1]:g}")
        if bolus.species in knocked:
            raise InvalidInputError(f"bolus of {bolus.species}: the species is knocked out")

    parameters, values = _parameter_table(model, draws, targets, factors)
    plan = _plan(grid, schedule.boundaries, boluses)
    workers = (os.cpu_count() or 1) if workers is None else workers
    if workers < 1:
        raise InvalidInputError(f"workers must be >= 1, got {workers}")
    workers = max(1, min(workers, n // MIN_RUNS_PER_WORKER))
    size = chunk_size or (100 if workers == 1 else max(1, math.ceil(n / (4 * workers))))
    common = dict(sbml=model.sbml, key=model.sha256, knockouts=knocked, observe=observed,
                  n_times=grid.size, plan=plan, parameters=parameters,
                  initial=tuple((f.species, float(f.fold)) for f in initial_folds))
    jobs = [_Chunk(values=values[i:i + size], **common) for i in range(0, n, size)]
    obs = np.empty((n, grid.size, len(observed)))
    failed = np.zeros(n, dtype=bool)
    position = 0
    for chunk_obs, chunk_failed in ordered(make_executor(workers).imap(_run_chunk, jobs)):
        obs[position:position + len(chunk_obs)] = chunk_obs
        failed[position:position + len(chunk_obs)] = chunk_failed
        position += len(chunk_obs)
        if on_progress is not None:
            on_progress(len(chunk_obs))
    return PopulationResult(
        times=grid, obs=obs, species=observed, doses=schedule.at(grid), schedule=schedule,
        draws=draws, failed=failed, time_unit=model.time_unit, model_name=model.name,
        seconds=_time.perf_counter() - started,
    )


def _parameter_table(model: PathwayModel, draws: ParameterDraws, targets: tuple[str, ...],
                     factors: np.ndarray) -> tuple[tuple[str, ...], np.ndarray]:
    """Per-run, per-segment values of every parameter a run changes: `[n, K, Q]`."""
    names = tuple(dict.fromkeys([*draws.names, *targets]))
    n, k = factors.shape[:2]
    values = np.empty((n, k, len(names)))
    base = np.array([model.parameters[p] for p in names], dtype=np.float64)
    drawn = np.broadcast_to(base, (n, len(names))).copy()
    drawn[:, :len(draws.names)] = draws.values(model)
    values[:] = drawn[:, None, :]
    for j, target in enumerate(targets):
        values[:, :, names.index(target)] *= factors[:, :, j]
    return names, values


def _plan(grid: np.ndarray, boundaries: np.ndarray,
          boluses: Sequence[Bolus]) -> tuple[_Interval, ...]:
    """Cut [0, grid[-1]] at segment boundaries and bolus times; map output points to cuts.

    An output point at a cut belongs to the interval that starts there (values are
    right-continuous: a bolus at t shows at t); the last point closes the last interval.
    """
    end = float(grid[-1])
    cuts = sorted({0.0, end, *(float(b) for b in boundaries if 0 < b < end),
                   *(float(b.time) for b in boluses if b.time < end)})
    segments = np.clip(np.searchsorted(boundaries, cuts, side="right") - 1, 0,
                       len(boundaries) - 2)
    # A cut a rounding error away from an output point (linspace grids) would ask CVODE
    # for two almost equal times; the cut moves onto the point instead.
    tolerance = 1e-9 * max(1.0, end)
    nearest = np.clip(np.searchsorted(grid, cuts), 0, grid.size - 1)
    for i, cut in enumerate(cuts):
        for j in (nearest[i] - 1, nearest[i]):
            if 0 <= j < grid.size and abs(grid[j] - cut) <= tolerance:
                cuts[i] = float(grid[j])
    if len(cuts) == 1:  # a single output time at t = 0
        cuts = [0.0, 0.0]
    intervals = []
    for i, (start, stop) in enumerate(zip(cuts[:-1], cuts[1:], strict=True)):
        last = i == len(cuts) - 2
        inside = (grid >= start) & ((grid <= stop) if last else (grid < stop))
        points = grid[inside].tolist()
        asked = sorted({start, *points, stop}) if stop > start else [start]
        rows = np.searchsorted(asked, points)
        intervals.append(_Interval(
            start=start, end=stop, segment=int(segments[i]),
            boluses=tuple((b.species, float(b.amount)) for b in boluses if b.time == start),
            times=tuple(asked), rows=rows, grid=np.flatnonzero(inside)))
    return tuple(intervals)


_COMPILED: dict[tuple[str, tuple[str, ...]], object] = {}


def _compiled(chunk: _Chunk):  # type: ignore[no-untyped-def]
    """This worker's compiled model for the chunk (compiled on first use, then kept)."""
    key = (chunk.key, chunk.knockouts)
    runner = _COMPILED.get(key)
    if runner is None:
        if len(_COMPILED) >= 4:
            _COMPILED.clear()
        runner = compile_sbml(chunk.sbml)
        for i, species in enumerate(chunk.knockouts):
            runner.setBoundary(species, True, i == len(chunk.knockouts) - 1)
        for species in chunk.knockouts:
            runner.setValue(f"init([{species}])", 0.0)
        _COMPILED[key] = runner
    return runner


def _run_chunk(chunk: _Chunk) -> tuple[np.ndarray, np.ndarray]:
    """Simulate the chunk's runs; returns `obs [r, T, S]` and `failed [r]`."""
    runner = _compiled(chunk)
    runner.timeCourseSelections = [f"[{s}]" for s in chunk.observe]
    model = runner.model
    ids = list(model.getGlobalParameterIds())
    index = np.array([ids.index(p) for p in chunk.parameters], dtype=np.int32)
    runs = chunk.values.shape[0]
    obs = np.full((runs, chunk.n_times, len(chunk.observe)), np.nan)
    failed = np.zeros(runs, dtype=bool)
    for r in range(runs):
        try:
            _run_one(runner, chunk, index, chunk.values[r], obs[r])
        except RuntimeError:  # CVODE gave up on this parameter set; keep the others
            obs[r] = np.nan
            failed[r] = True
    return obs, failed


def _run_one(runner, chunk: _Chunk, index: np.ndarray, values: np.ndarray,  # type: ignore[no-untyped-def]
             out: np.ndarray) -> None:
    runner.resetAll()
    model = runner.model
    for species, fold in chunk.initial:
        runner.setValue(f"[{species}]", runner.getValue(f"[{species}]") * fold)
    segment = -1
    for interval in chunk.plan:
        if interval.segment != segment and index.size:
            model.setGlobalParameterValues(index, values[interval.segment])
        segment = interval.segment
        for species, amount in interval.boluses:
            runner.setValue(f"[{species}]", runner.getValue(f"[{species}]") + amount)
        if len(interval.times) == 1:
            if interval.grid.size:
                out[interval.grid] = [runner.getValue(f"[{s}]") for s in chunk.observe]
            continue
        result = np.asarray(runner.simulate(times=list(interval.times)))
        if interval.grid.size:
            out[interval.grid] = result[interval.rows]
