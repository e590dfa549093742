"""Cohort data engine: virtual patients living days under a controller, logged like a CGM.

Every subject is simulated minute by minute (the controller acts each minute), all
subjects of a shard at once; the log keeps one row per sensor sample: the CGM reading and
true plasma glucose at the sample time, and the mean insulin rate and carbs announced over
the interval that follows it. Shards stream into one Parquet file, so memory stays flat
whatever the cohort size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch

from biowm.core.executor import Executor, InProcessExecutor, ordered
from biowm.core.simulator import State
from biowm.core.space import Space
from biowm.core.trajectories import Trajectories, TrajectoryWriter
from biowm.domains.glucose.controllers import Controller
from biowm.domains.glucose.metrics import glycemic_metrics
from biowm.domains.glucose.simulator import (
    BG_CHANNEL,
    CARBS_CHANNEL,
    CGM_CHANNEL,
    INSULIN_CHANNEL,
    GlucoseSimulator,
    bg_mg_dl,
)

LOG_OBS_SPACE = Space.of(CGM_CHANNEL, BG_CHANNEL)
LOG_ACTION_SPACE = Space.of(INSULIN_CHANNEL, CARBS_CHANNEL)
MINUTES_PER_DAY = 1440


@dataclass
class CohortResult:
    """Per-subject outcome metrics (on true BG at sensor samples) and patient names."""

    patients: list[str]
    metrics: dict[str, torch.Tensor]


def simulate_shard(
    simulator: GlucoseSimulator,
    controller: Controller,
    patients: Sequence[str],
    days: int,
    seed: int,
    subject_offset: int = 0,
    on_minutes: Callable[[int], None] | None = None,
    on_step: Callable[[int, State, torch.Tensor], None] | None = None,
) -> Trajectories:
    """Simulate `patients` (one subject each) for `days`, logged at the sensor period.

    `on_minutes(k)` is called as simulation progresses with `k` patient-minutes done.
    `on_step(minute, state, insulin_u_per_min)` sees every minute's state before it is
    stepped and the insulin rate `[B]` delivered over it (e.g. to keep snapshots for
    branching); it must not modify them.
    """
    sample = simulator.sensor.sample_minutes
    total_minutes = days * MINUTES_PER_DAY
    n_samples = total_minutes // sample
    state = simulator.reset(subjects=patients, seed=seed, subject_offset=subject_offset)
    memory = controller.reset(simulator, state)
    b = len(patients)
    obs = torch.zeros(b, n_samples, 2, dtype=torch.float32)
    insulin_sum = torch.zeros(b, n_samples, dtype=torch.float64)
    carbs_sum = torch.zeros(b, n_samples, dtype=torch.float64)
    zeros = torch.zeros(b, dtype=torch.float64)
    cgm = simulator.observe(state)[:, 0]
    for minute in range(n_samples * sample):
        k, at_sample = divmod(minute, sample)
        if at_sample == 0:
            cgm = simulator.observe(state)[:, 0]
            obs[:, k, 0] = cgm.float()
            obs[:, k, 1] = bg_mg_dl(state).float()
        carbs = simulator.meals_due(state)
        insulin, memory = controller.act(memory, cgm, carbs, state["minute"])
        if on_step is not None:
            on_step(minute, state, insulin)
        insulin_sum[:, k] += insulin
        carbs_sum[:, k] += carbs
        state = simulator.step(state, torch.stack([insulin, zeros], dim=1), 1.0)
        if on_minutes is not None and minute % 60 == 59:
            on_minutes(60 * b)
    times = (torch.arange(n_samples, dtype=torch.float64) * sample).expand(b, -1).clone()
    actions = torch.stack([insulin_sum / sample, carbs_sum], dim=2).float()
    ids = [f"{p}/{subject_offset + i:06d}" for i, p in enumerate(patients)]
    return Trajectories(
        times=times,
        obs=obs,
        actions=actions,
        mask=torch.ones_like(obs, dtype=torch.bool),
        static=simulator.static(state).float(),
        subject_ids=ids,
        obs_space=LOG_OBS_SPACE,
        action_space=LOG_ACTION_SPACE,
        static_space=simulator.static_space,
    )


@dataclass
class ShardJob:
    """Everything a worker process needs to simulate one shard of a cohort."""

    simulator: GlucoseSimulator
    controller: Controller
    patients: list[str]
    days: int
    seed: int
    subject_offset: int


def run_shard(job: ShardJob) -> Trajectories:
    """Top-level (picklable) entry point for executors."""
    return simulate_shard(
        job.simulator, job.controller, job.patients, job.days, job.seed, job.subject_offset
    )


def simulate_cohort(
    simulator: GlucoseSimulator,
    controller: Controller,
    patients: Sequence[str],
    days: int,
    seed: int,
    writer: TrajectoryWriter | None = None,
    shard_size: int = 2000,
    on_minutes: Callable[[int], None] | None = None,
    executor: Executor | None = None,
) -> CohortResult:
    """Simulate all `patients` in shards, streaming each shard to `writer` in subject order.

    In-process, `on_minutes` reports progress every simulated hour; with a parallel
    `executor` it reports each finished shard. Results do not depend on shard size or
    executor: every subject's randomness is keyed by its index in the cohort.
    """
    jobs = [
        ShardJob(simulator, controller, list(patients[start : start + shard_size]), days, seed,
                 start)
        for start in range(0, len(patients), shard_size)
    ]
    if executor is None or isinstance(executor, InProcessExecutor):
        shards: Iterator[Trajectories] = (
            simulate_shard(simulator, controller, job.patients, days, seed, job.subject_offset,
                           on_minutes=on_minutes)
            for job in jobs
        )
    else:
        def finished(pairs: Iterator[tuple[int, Trajectories]]):  # type: ignore[no-untyped-def]
            for index, shard in pairs:
                if on_minutes is not None:
                    on_minutes(len(jobs[index].patients) * days * MINUTES_PER_DAY)
                yield index, shard

        shards = ordered(finished(executor.imap(run_shard, jobs)))
    metrics: dict[str, list[torch.Tensor]] = {}
    for logged in shards:
        if writer is not None:
            writer.write(logged)
        for name, value in glycemic_metrics(logged.obs[:, :, 1]).items():
            metrics.setdefault(name, []).append(value)
    return CohortResult(
        patients=list(patients), metrics={k: torch.cat(v) for k, v in metrics.items()}
    )


def empty_log(simulator: GlucoseSimulator) -> Trajectories:
    """A zero-subject log with the cohort engine's spaces (a template for writers)."""
    return Trajectories(
        times=torch.zeros(0, 1, dtype=torch.float64),
        obs=torch.zeros(0, 1, len(LOG_OBS_SPACE)),
        actions=torch.zeros(0, 1, len(LOG_ACTION_SPACE)),
        mask=torch.zeros(0, 1, len(LOG_OBS_SPACE), dtype=torch.bool),
        static=torch.zeros(0, len(simulator.static_space)),
        subject_ids=[],
        obs_space=LOG_OBS_SPACE,
        action_space=LOG_ACTION_SPACE,
        static_space=simulator.static_space,
    )


def cohort_patients(simulator: GlucoseSimulator, cohort: str, n: int) -> list[str]:
    """`n` subjects cycling through the cohort's patients (balanced, deterministic)."""
    names = simulator.table.cohort(cohort)
    return [names[i % len(names)] for i in range(n)]
