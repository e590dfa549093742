"""Closed-loop experiment design: which experiments to run next, chosen from an ensemble.

Domain-free. A round fits the model to the experiments run so far, records its error on
everything that could be run, and hands back the ensemble's predictions for the
candidates not yet run; the strategy picks the next batch:

- `random`: uniformly among the candidates;
- `uncertainty`: the largest ensemble variance of the predicted outcome (summed over
  outputs) — where a measurement changes the model most;
- `interaction`: the largest expected squared departure from a reference prediction
  (e.g. additivity of a double perturbation): mean departure² + ensemble variance,
  a proxy for the information a run gives about what the reference misses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from biowm.core.errors import InvalidInputError

STRATEGIES = ("random", "uncertainty", "interaction")


@dataclass(frozen=True)
class LoopDesign:
    """`rounds` batches of `batch` experiments, chosen by `strategy`, seeded by `seed`."""

    strategy: str = "uncertainty"
    rounds: int = 8
    batch: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise InvalidInputError(f"strategy must be one of {', '.join(STRATEGIES)}, got "
                                    f"{self.strategy!r}")
        if self.rounds < 1 or self.batch < 1:
            raise InvalidInputError(f"rounds and batch must be >= 1, got {self.rounds}, "
                                    f"{self.batch}")


@dataclass
class RoundResult:
    """One fitted round: its error, and the ensemble's view of given candidates —
    `predict(candidates) -> (members [M, D, K], reference [M, D, K])`."""

    error: float
    predict: Callable[[list[str]], tuple[np.ndarray, np.ndarray]]


FitRound = Callable[[list[str], int], RoundResult]  # (experiments run, seed) -> round


def acquisition_scores(members: np.ndarray, reference: np.ndarray, strategy: str
                       ) -> np.ndarray:
    """Higher = run sooner, for member predictions `[M, D, K]` (batched over candidates)."""
    variance = members.var(axis=0).sum(axis=1)
    if strategy == "uncertainty":
        return variance
    if strategy == "interaction":
        return ((members - reference).mean(axis=0) ** 2).sum(axis=1) + variance
    raise InvalidInputError(f"no acquisition score for strategy {strategy!r}")


def run_loop(candidates: list[str], fit_round: FitRound, design: LoopDesign,
             progress: Callable[[int, float], None] | None = None) -> dict[str, Any]:
    """Rounds of fit → record error → choose; the error after 0, batch, 2·batch, … runs."""
    rng = np.random.default_rng([design.seed, 11])
    run: list[str] = []
    experiments, errors = [], []
    for round_index in range(design.rounds + 1):
        result = fit_round(list(run), design.seed)
        experiments.append(len(run))
        errors.append(result.error)
        if progress is not None:
            progress(len(run), result.error)
        done = set(run)
        remaining = [name for name in candidates if name not in done]
        if round_index == design.rounds or not remaining:
            break
        take = min(design.batch, len(remaining))
        if design.strategy == "random":
            chosen = rng.choice(len(remaining), take, replace=False)
        else:
            members, reference = result.predict(remaining)
            scores = acquisition_scores(members, reference, design.strategy)
            chosen = np.argsort(-scores, kind="stable")[:take]
        run.extend(remaining[i] for i in chosen)
    return {"strategy": design.strategy, "seed": design.seed, "experiments": experiments,
            "error": errors, "run": run}


def experiments_to_reach(curve: dict[str, Any], target: float) -> int | None:
    """The fewest experiments after which the curve's error is at or below `target`."""
    for count, error in zip(curve["experiments"], curve["error"], strict=True):
        if error <= target:
            return int(count)
    return None


def compare_strategies(candidates: list[str], fit_round: FitRound, strategies: list[str],
                       rounds: int, batch: int, seeds: list[int],
                       progress: Callable[[str, int, int, float], None] | None = None,
                       ) -> dict[str, Any]:
    """Each strategy against random on each seed: the experiments it needs to reach the
    error random reaches at the end, as a fraction of random's experiments."""
    if not strategies or "random" in strategies or set(strategies) - set(STRATEGIES):
        raise InvalidInputError(f"strategies to compare with random must be among "
                                f"{', '.join(STRATEGIES[1:])}, got {strategies}")
    per_seed = []
    for seed in seeds:
        curves = {}
        for name in ("random", *strategies):
            def report(count: int, error: float, name: str = name, seed: int = seed) -> None:
                if progress is not None:
                    progress(name, seed, count, error)
            curves[name] = run_loop(candidates, fit_round,
                                    LoopDesign(name, rounds, batch, seed), report)
        target = curves["random"]["error"][-1]
        total = curves["random"]["experiments"][-1]
        needed = {name: experiments_to_reach(curves[name], target) for name in strategies}
        per_seed.append({"seed": seed, "curves": curves, "random_final_error": target,
                         "random_experiments": total, "experiments_needed": needed,
                         "fraction_of_random": {name: None if n is None else n / total
                                                for name, n in needed.items()}})
    worst = {}
    for name in strategies:
        fractions = [s["fraction_of_random"][name] for s in per_seed]
        worst[name] = None if None in fractions else max(fractions)
    return {"strategies": strategies, "rounds": rounds, "batch": batch, "seeds": per_seed,
            "worst_fraction": worst}
