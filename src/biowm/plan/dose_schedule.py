"""Chance-constrained dose-schedule planning on a trajectory surrogate (knows no domain).

Chooses piecewise-constant doses (K equal segments over the surrogate's time grid, one or
several action channels) that keep one output channel below a threshold over a time
window while using as little drug as possible (cumulative dose = dose × time), robust
across a population of virtual cells: the constraint must hold in at least `1 - risk` of
the cells. A cell counts as safe when its upper prediction `mean + z·sd` (the surrogate's
calibrated predictive, so its own uncertainty is included) stays below the threshold at
every grid time of the window.

The search is the cross-entropy method over segment doses: every candidate schedule of an
iteration is scored on every cell in one batched surrogate call (chunked to bound memory),
ranked feasibility first (fewest unsafe cells, then least dose). The reference is the
cheapest *constant* schedule that meets the constraint, found by a batched grid over the
constant dose and a bisection; it also seeds the search, so the plan never costs more
than a feasible constant schedule.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Protocol

import numpy as np
import torch

from biowm.core.errors import InvalidInputError
from biowm.core.space import Space


class PredictiveSurrogate(Protocol):
    """What the planner needs of a surrogate (e.g. `TrajectorySurrogate`)."""

    grid: torch.Tensor
    obs_space: Space
    action_space: Space
    static_space: Space

    def predictive(self, static: torch.Tensor | None, actions: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]: ...


@dataclass(frozen=True)
class DoseProblem:
    """Keep `output` below `threshold` over `window` (grid time units) in at least
    `1 - risk` of the cells, each judged at its `1 - margin_risk` upper prediction."""

    output: str
    threshold: float
    window: tuple[float, float]
    segments: int = 6
    risk: float = 0.05
    margin_risk: float = 0.05

    @property
    def target_fraction(self) -> float:
        return 1.0 - self.risk

    @property
    def margin_z(self) -> float:
        """Standard normal quantile of the per-cell upper prediction."""
        return NormalDist().inv_cdf(1.0 - self.margin_risk)


@dataclass(frozen=True)
class SearchSettings:
    """Cross-entropy search and constant-reference settings."""

    candidates: int = 256
    iterations: int = 8
    elite_fraction: float = 0.1
    constant_grid: int = 33
    bisection_steps: int = 8
    chunk_rollouts: int = 16_384
    seed: int = 0

    def __post_init__(self) -> None:
        if self.candidates < 2 or self.iterations < 1 or self.constant_grid < 2 \
                or self.bisection_steps < 0 or self.chunk_rollouts < 1:
            raise InvalidInputError(f"search settings need candidates >= 2, iterations >= 1, "
                                    f"constant_grid >= 2, bisection_steps >= 0 and "
                                    f"chunk_rollouts >= 1, got {self}")
        if not 0.0 < self.elite_fraction <= 1.0:
            raise InvalidInputError(f"elite fraction must be in (0, 1], got "
                                    f"{self.elite_fraction}")


@dataclass
class DosePlan:
    """A planned schedule and its constant reference. Doses `[K, A]` of `controls` hold on
    `[boundaries[k], boundaries[k+1])`; cumulative doses are dose × time per control."""

    controls: tuple[str, ...]
    units: tuple[str, ...]
    boundaries: np.ndarray
    doses: np.ndarray
    predicted_fraction: float
    cumulative_dose: np.ndarray
    feasible: bool
    constant_doses: np.ndarray
    constant_predicted_fraction: float
    constant_cumulative_dose: np.ndarray
    constant_feasible: bool
    target_fraction: float
    margin_z: float
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def constant_segment_doses(self) -> np.ndarray:
        """The constant reference as `[K, A]` segment doses."""
        return np.broadcast_to(self.constant_doses, self.doses.shape).copy()

    def to_dict(self) -> dict[str, object]:
        return {
            "controls": list(self.controls), "units": list(self.units),
            "boundaries": self.boundaries.tolist(), "target_fraction": self.target_fraction,
            "margin_z": self.margin_z,
            "plan": {"doses": self.doses.tolist(),
                     "cumulative_dose": self.cumulative_dose.tolist(),
                     "predicted_fraction": self.predicted_fraction,
                     "feasible": self.feasible},
            "constant": {"doses": self.constant_doses.tolist(),
                         "cumulative_dose": self.constant_cumulative_dose.tolist(),
                         "predicted_fraction": self.constant_predicted_fraction,
                         "feasible": self.constant_feasible},
            "search_history": self.history,
        }


def meets(fraction: float | torch.Tensor, target: float) -> bool | torch.Tensor:
    """Whether a fraction of cells reaches the target (a counted fraction such as 190/200
    must not miss 0.95 by a rounding error)."""
    return fraction >= target - 1e-9


def segment_boundaries(grid: torch.Tensor, segments: int) -> np.ndarray:
    """K equal segments over the grid's span: `[K + 1]` times."""
    return np.linspace(float(grid[0]), float(grid[-1]), segments + 1)


def schedule_on_grid(doses: torch.Tensor, boundaries: np.ndarray, grid: torch.Tensor
                     ) -> torch.Tensor:
    """Segment doses `[C, K, A]` -> doses in effect at every grid time `[C, T, A]`
    (right-continuous: a segment's dose holds from its start)."""
    index = np.searchsorted(boundaries, grid.double().numpy(), side="right") - 1
    index = np.clip(index, 0, len(boundaries) - 2)
    return doses[:, torch.from_numpy(index), :]


def check_problem(surrogate: PredictiveSurrogate, problem: DoseProblem,
                  static: torch.Tensor | None) -> None:
    """Refuse a problem the surrogate cannot answer, with a one-line reason."""
    names = surrogate.obs_space.names
    if problem.output not in names:
        raise InvalidInputError(f"unknown output {problem.output!r}; the surrogate predicts: "
                                f"{', '.join(names)}")
    if not math.isfinite(problem.threshold):
        raise InvalidInputError(f"threshold must be a finite number, got {problem.threshold}")
    if not 0.0 < problem.risk < 1.0 or not 0.0 < problem.margin_risk < 1.0:
        raise InvalidInputError(f"risk must be in (0, 1), got {problem.risk} (and per-cell "
                                f"margin risk {problem.margin_risk})")
    if problem.segments < 1:
        raise InvalidInputError(f"need at least one dose segment, got {problem.segments}")
    grid = surrogate.grid.double()
    t_from, t_to = problem.window
    start, end = float(grid[0]), float(grid[-1])
    if not (start <= t_from < t_to <= end):
        raise InvalidInputError(f"window {t_from:g},{t_to:g} must satisfy {start:g} <= start "
                                f"< end <= {end:g} (the surrogate's time grid)")
    if not bool(((grid >= t_from) & (grid <= t_to)).any()):
        raise InvalidInputError(f"window {t_from:g},{t_to:g} holds no grid time of the "
                                "surrogate")
    if not len(surrogate.action_space):
        raise InvalidInputError("the surrogate has no action channels to plan doses for")
    for channel in surrogate.action_space:
        if not (math.isfinite(channel.low) and math.isfinite(channel.high)
                and channel.low < channel.high):
            raise InvalidInputError(f"action {channel.name} needs a finite dose range to plan "
                                    f"over, got [{channel.low}, {channel.high}]")
    p = len(surrogate.static_space.names)
    if static is not None and (static.ndim != 2 or static.shape[1] != p or len(static) < 1
                               or not bool(torch.isfinite(static).all())):
        raise InvalidInputError(f"population must be a finite [cells >= 1, {p}] tensor of "
                                f"static covariates, got {list(static.shape)}")


class _Scorer:
    """Fraction of cells whose upper prediction stays below the threshold in the window,
    for many schedules at once (candidates × cells in chunked batched calls)."""

    def __init__(self, surrogate: PredictiveSurrogate, problem: DoseProblem,
                 static: torch.Tensor | None, boundaries: np.ndarray, chunk_rollouts: int,
                 on_rollouts: Callable[[int], None] | None) -> None:
        self.surrogate, self.problem, self.boundaries = surrogate, problem, boundaries
        self.static = static.float() if static is not None else None
        self.cells = len(static) if static is not None else 1
        self.channel = surrogate.obs_space.index(problem.output)
        grid = surrogate.grid.double()
        self.window = (grid >= problem.window[0]) & (grid <= problem.window[1])
        self.chunk_rollouts, self.on_rollouts = chunk_rollouts, on_rollouts

    def peaks(self, doses: torch.Tensor) -> torch.Tensor:
        """`[C, N]` each cell's highest upper prediction in the window, per schedule
        `[C, K, A]`; the cell is safe when it is below the threshold."""
        actions = schedule_on_grid(doses.float(), self.boundaries, self.surrogate.grid)
        per_chunk = max(1, self.chunk_rollouts // self.cells)
        rows = []
        for start in range(0, len(actions), per_chunk):
            part = actions[start:start + per_chunk]
            c = len(part)
            batch = part.repeat_interleave(self.cells, dim=0)
            static = None if self.static is None else self.static.repeat(c, 1)
            mean, sd = self.surrogate.predictive(static, batch)
            upper = (mean[:, self.window, self.channel]
                     + self.problem.margin_z * sd[:, self.window, self.channel])
            rows.append(upper.amax(dim=1).reshape(c, self.cells))
            if self.on_rollouts is not None:
                self.on_rollouts(c * self.cells)
        return torch.cat(rows).double()

    def score(self, doses: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per schedule: the fraction of safe cells, and how far (relative to the
        threshold) the population's `target_fraction` quantile of peaks lies above it."""
        peaks = self.peaks(doses)
        fraction = (peaks < self.problem.threshold).double().mean(dim=1)
        quantile = torch.quantile(peaks, self.problem.target_fraction, dim=1)
        scale = max(abs(self.problem.threshold), 1e-12)
        return fraction, ((quantile - self.problem.threshold) / scale).clamp_min(0.0)


def cumulative_dose(doses: np.ndarray | torch.Tensor, boundaries: np.ndarray) -> np.ndarray:
    """Dose × time per control: `[..., K, A]` -> `[..., A]`."""
    widths = np.diff(boundaries)
    return (np.asarray(doses, dtype=np.float64) * widths[:, None]).sum(axis=-2)


def plan_dose_schedule(
    surrogate: PredictiveSurrogate,
    static: torch.Tensor | None,
    problem: DoseProblem,
    settings: SearchSettings | None = None,
    on_rollouts: Callable[[int], None] | None = None,
) -> DosePlan:
    """The cheapest schedule found that meets the chance constraint over the population
    `static [N, P]` (None: the surrogate's population forecast, one row), and the cheapest
    feasible constant schedule. `on_rollouts(k)` reports k scored surrogate rollouts."""
    settings = settings or SearchSettings()
    check_problem(surrogate, problem, static)
    space = surrogate.action_space
    low = torch.tensor(space.low(), dtype=torch.float64)
    high = torch.tensor(space.high(), dtype=torch.float64)
    k, a = problem.segments, len(space.names)
    boundaries = segment_boundaries(surrogate.grid, k)
    scorer = _Scorer(surrogate, problem, static, boundaries, settings.chunk_rollouts,
                     on_rollouts)
    widths = torch.tensor(np.diff(boundaries))
    # cost in [0, 1]: cumulative dose above the floor, per unit of range, over all controls
    full_cost = float(widths.sum() * a)

    def cost(doses: torch.Tensor) -> torch.Tensor:
        used = (doses - low) / (high - low)
        return (used * widths[:, None]).sum(dim=(1, 2)) / full_cost

    def rank_key(fraction: torch.Tensor, excess: torch.Tensor, doses: torch.Tensor
                 ) -> torch.Tensor:
        # feasible schedules (cost in [0, 1]) before infeasible ones (key > 1), those
        # ranked by how far the population's upper quantile lies above the threshold
        feasible = meets(fraction, problem.target_fraction)
        shortfall = (problem.target_fraction - fraction).clamp_min(0.0)
        return torch.where(feasible, cost(doses), 1.0 + excess + shortfall)

    constant_u, constant_fraction, constant_excess = _constant_reference(
        scorer, problem, settings, k, low, high)
    constant = (low + constant_u * (high - low)).expand(k, a)

    generator = torch.Generator().manual_seed(settings.seed)
    mean = torch.full((k, a), 0.5, dtype=torch.float64)
    sd = torch.full((k, a), 0.5, dtype=torch.float64)
    best_doses, best_fraction = constant.clone(), constant_fraction
    best_key = float(rank_key(torch.tensor([constant_fraction]),
                              torch.tensor([constant_excess]), constant[None])[0])
    n_elite = max(1, round(settings.elite_fraction * settings.candidates))
    history = []
    for iteration in range(settings.iterations):
        u = (mean + sd * torch.randn(settings.candidates, k, a, generator=generator,
                                     dtype=torch.float64)).clamp(0.0, 1.0)
        candidates = low + u * (high - low)
        candidates[0] = best_doses  # keep the incumbent: the search never gets worse
        fraction, excess = scorer.score(candidates)
        key = rank_key(fraction, excess, candidates)
        order = torch.argsort(key)
        if float(key[order[0]]) < best_key:
            best_key = float(key[order[0]])
            best_doses, best_fraction = candidates[order[0]].clone(), float(fraction[order[0]])
        elite = ((candidates[order[:n_elite]] - low) / (high - low))
        mean = elite.mean(dim=0)
        sd = elite.std(dim=0, unbiased=False).clamp_min(0.02)
        history.append({"iteration": iteration, "best_fraction": best_fraction,
                        "best_cost": float(cost(best_doses[None])[0]),
                        "feasible_candidates": float(
                            meets(fraction, problem.target_fraction).float().mean())})
    plan_np, constant_np = best_doses.numpy(), constant.numpy()
    return DosePlan(
        controls=tuple(space.names), units=tuple(space.units), boundaries=boundaries,
        doses=plan_np, predicted_fraction=best_fraction,
        cumulative_dose=cumulative_dose(plan_np, boundaries),
        feasible=bool(meets(best_fraction, problem.target_fraction)),
        constant_doses=constant_np[0], constant_predicted_fraction=constant_fraction,
        constant_cumulative_dose=cumulative_dose(constant_np, boundaries),
        constant_feasible=bool(meets(constant_fraction, problem.target_fraction)),
        target_fraction=problem.target_fraction, margin_z=problem.margin_z, history=history)


def _constant_reference(scorer: _Scorer, problem: DoseProblem, settings: SearchSettings,
                        k: int, low: torch.Tensor, high: torch.Tensor
                        ) -> tuple[float, float, float]:
    """The smallest constant level u in [0, 1] (dose = low + u·(high - low) on every
    control) that meets the constraint: a batched grid, then bisection below the first
    feasible grid level (assumes more drug never hurts). Returns (u, its fraction); the
    full range's fraction when no level is feasible; and the level's quantile excess."""

    def doses(levels: Sequence[float]) -> torch.Tensor:
        u = torch.tensor(levels, dtype=torch.float64)[:, None, None]
        return (low + u * (high - low)).expand(len(levels), k, len(low))

    levels = np.linspace(0.0, 1.0, settings.constant_grid).tolist()
    fractions, excess = scorer.score(doses(levels))
    feasible = torch.nonzero(meets(fractions, problem.target_fraction)).flatten()
    if not len(feasible):
        return 1.0, float(fractions[-1]), float(excess[-1])
    first = int(feasible[0])
    if first == 0:
        return 0.0, float(fractions[0]), float(excess[0])
    lo, hi = levels[first - 1], levels[first]
    hi_fraction, hi_excess = float(fractions[first]), float(excess[first])
    for _ in range(settings.bisection_steps):
        middle = 0.5 * (lo + hi)
        fraction, excess = (float(v[0]) for v in scorer.score(doses([middle])))
        if meets(fraction, problem.target_fraction):
            hi, hi_fraction, hi_excess = middle, fraction, excess
        else:
            lo = middle
    return hi, hi_fraction, hi_excess
