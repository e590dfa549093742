"""`biowm benchmark sepsis`: offline planning from clinician logs, scored on the true MDP.

For every logged-data size and seed: simulate clinician episodes, plan offline
(`plan_offline`: prior, prior strength and pessimism all chosen from the logs), score the
policy exactly on the true ICU-Sepsis tables, and estimate its value off-policy (WIS,
FQE, model-based) from a *separate* batch of clinician episodes (half as many, disjoint
patients) that planning never saw. The true tables only score; they choose nothing.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from biowm.bench.ope import evaluate_off_policy, neural_evaluation_prior
from biowm.core.executor import make_executor, ordered
from biowm.core.io import atomic_path, atomic_write_text, check_writable_dir, json_ready
from biowm.core.manifest import Manifest
from biowm.domains.sepsis.mdp import (
    N_ACTIONS,
    N_STATES,
    REFERENCE_VALUES,
    TERMINAL_STATES,
    load_tables,
    reward_on_entry,
    uniform_policy,
)
from biowm.domains.sepsis.simulator import simulate_episodes
from biowm.models.tabular import DirichletTabularModel, Transitions, transitions_from_trajectories
from biowm.models.tabular_mdp import policy_value
from biowm.plan.offline import OfflinePlannerConfig, plan_offline, plan_policy
from biowm.plan.tabular import Pessimism, optimal_policy, pessimistic_plan

ESTIMATOR_LABELS = {"wis": "WIS", "fqe": "FQE", "model_based": "model-based",
                    "wdr": "WDR", "model_based_neural": "model-based (neural prior)"}
EVALUATION_OFFSET = 10_000_000  # evaluation patients never overlap planning patients


@dataclass
class SepsisBenchmarkSettings:
    episodes: tuple[int, ...] = (1_000, 3_000, 10_000, 30_000, 100_000)
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    folds: int = 3
    neural_epochs: int = 30
    posterior_draws: int = 10
    workers: int = 2

    @classmethod
    def quick(cls) -> SepsisBenchmarkSettings:
        return cls(episodes=(300, 1_000), seeds=(0,), folds=2, neural_epochs=2,
                   posterior_draws=2, workers=1)


@dataclass
class CellJob:
    episodes: int
    seed: int
    settings: SepsisBenchmarkSettings
    progress: bool = False


@dataclass
class CellResult:
    episodes: int
    seed: int
    planned_value: float
    prior: str
    concentration: float
    pessimism: str
    selection: dict[str, float]
    off_support: int
    states_with_data: int
    ablation: dict[str, float]
    ope: dict[str, dict[str, dict[str, float]]]
    seconds: float
    off_support_detail: list[dict[str, float]] = field(default_factory=list)
    policy: np.ndarray | None = None  # saved as policies/*.npy, not in results.json


def logged_transitions(episodes: int, seed: int, offset: int = 0) -> Transitions:
    logs = simulate_episodes(load_tables().clinician_policy, episodes, seed, offset=offset)
    return transitions_from_trajectories(logs, N_STATES, N_ACTIONS)


def _ablation(model: DirichletTabularModel, candidates: Any, true_mdp: Any,
              planning: Transitions) -> dict[str, float]:
    """Exact values of every pessimism candidate on the final model, and of the
    certainty-equivalent plan (maximum-likelihood model, logged support, no pessimism)."""
    counts = model.visit_counts()
    allowed = counts > 0
    allowed[~allowed.any(axis=1)] = True
    values = {}
    for candidate in candidates:
        values[candidate.label()] = policy_value(true_mdp, plan_policy(model, candidate,
                                                                       allowed))
    mle = DirichletTabularModel(N_STATES, N_ACTIONS, TERMINAL_STATES, reward_on_entry(),
                                concentration=1e-9)
    mle.fit_transitions(planning)
    plan = pessimistic_plan(mle.mdp(), counts, mle.posterior_concentration(), Pessimism("none"),
                            allowed)
    values["certainty-equivalent (MLE)"] = policy_value(true_mdp, plan.policy)
    return values


def run_cell(job: CellJob) -> CellResult:
    started = time.perf_counter()
    tables = load_tables()
    true_mdp = tables.mdp()
    settings = job.settings
    planning = logged_transitions(job.episodes, job.seed)
    evaluation = logged_transitions(max(job.episodes // 2, 100), job.seed,
                                    offset=EVALUATION_OFFSET)
    config = OfflinePlannerConfig(folds=settings.folds, seed=job.seed,
                                  neural_epochs=settings.neural_epochs, progress=job.progress)
    plan = plan_offline(planning, N_STATES, N_ACTIONS, list(TERMINAL_STATES), reward_on_entry(),
                        tables.state_features, config)
    policies = {"planned": plan.policy, "clinician": tables.clinician_policy,
                "random": uniform_policy()}
    ope: dict[str, dict[str, dict[str, float]]] = {}
    neural_prior = neural_evaluation_prior(evaluation, tables.state_features, N_ACTIONS,
                                           list(TERMINAL_STATES), reward_on_entry(), job.seed,
                                           settings.neural_epochs)
    for name, policy in policies.items():
        exact = policy_value(true_mdp, policy)
        estimates = evaluate_off_policy(evaluation, policy, reward_on_entry(),
                                        list(TERMINAL_STATES), job.seed,
                                        settings.posterior_draws, neural_prior)
        ope[name] = {"exact": {"value": exact}}
        for estimator, estimate in estimates.items():
            ope[name][estimator] = {"value": estimate.value, "error": estimate.value - exact,
                                    "low": estimate.low, "high": estimate.high,
                                    "effective_episodes": estimate.effective_episodes}
    return CellResult(
        episodes=job.episodes, seed=job.seed, planned_value=ope["planned"]["exact"]["value"],
        prior=plan.prior, concentration=float(plan.model.concentration or 0.0),
        pessimism=plan.pessimism.label(), selection=plan.selection,
        off_support=len(plan.off_support), states_with_data=plan.states_with_data,
        ablation={**_ablation(plan.model, config.candidates, true_mdp, planning),
                  "chosen, logged support only": policy_value(true_mdp,
                                                              plan.support_only_policy)},
        ope=ope, seconds=time.perf_counter() - started,
        off_support_detail=[asdict(o) for o in plan.off_support], policy=plan.policy,
    )


def reference_values() -> dict[str, float]:
    """Exact values of the random, clinician and optimal policies on the true tables."""
    tables = load_tables()
    mdp = tables.mdp()
    return {"random": policy_value(mdp, uniform_policy()),
            "clinician": policy_value(mdp, tables.clinician_policy),
            "optimal": policy_value(mdp, optimal_policy(mdp).policy)}


def _stats(values: list[float]) -> dict[str, float]:
    array = np.asarray(values, dtype=np.float64)
    finite = array[np.isfinite(array)]
    return {"mean": float(finite.mean()) if finite.size else float("nan"),
            "sd": float(finite.std(ddof=1)) if finite.size > 1 else 0.0,
            "min": float(finite.min()) if finite.size else float("nan"), "n": int(finite.size)}


def summarise(cells: list[CellResult], references: dict[str, float]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for size in sorted({c.episodes for c in cells}):
        group = [c for c in cells if c.episodes == size]
        estimators = [e for e in group[0].ope["planned"] if e != "exact"]
        summary[str(size)] = {
            "planned_value": _stats([c.planned_value for c in group]),
            "beats_clinician": sum(c.planned_value >= references["clinician"] for c in group),
            "seeds": len(group),
            "off_support": _stats([c.off_support for c in group]),
            "off_support_fraction": _stats([c.off_support / max(c.states_with_data, 1)
                                            for c in group]),
            "chosen": {"prior": [c.prior for c in group],
                       "concentration": [c.concentration for c in group],
                       "pessimism": [c.pessimism for c in group]},
            "ablation": {name: _stats([c.ablation[name] for c in group])
                         for name in group[0].ablation},
            "ope_abs_error": {policy: {e: _stats([abs(c.ope[policy][e]["error"]) for c in group])
                                       for e in estimators} for policy in group[0].ope},
        }
    return summary


def markdown_tables(summary: dict[str, Any], references: dict[str, float]) -> str:
    lines = ["### Exact value of the planned policy (mean ± sd over seeds)", "",
             f"References (exact): random {references['random']:.4f}, clinician "
             f"{references['clinician']:.4f}, optimal {references['optimal']:.4f}.", "",
             "| episodes | planned value | ≥ clinician | off-support recs (share of states) "
             "| chosen prior / pessimism |", "|---|---|---|---|---|"]
    for size, row in summary.items():
        chosen = ", ".join(sorted({f"{p} α={a:g} / {s}" for p, a, s in zip(
            row["chosen"]["prior"], row["chosen"]["concentration"], row["chosen"]["pessimism"],
            strict=True)}))
        lines.append(f"| {int(size):,} | {_pm(row['planned_value'])} | {row['beats_clinician']}"
                     f"/{row['seeds']} | {row['off_support']['mean']:.1f} "
                     f"({row['off_support_fraction']['mean']:.2%}) | {chosen} |")
    first = next(iter(summary.values()))
    names = list(first["ablation"])
    lines += ["", "### Ablation: exact value of each pessimism on the same final model", "",
              "| episodes | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for size, row in summary.items():
        lines.append(f"| {int(size):,} | " + " | ".join(
            _pm(row["ablation"][n]) for n in names) + " |")
    estimators = list(first["ope_abs_error"]["planned"])
    lines += ["", "### Off-policy evaluation: mean |estimate − exact| on held-out logs", "",
              "| episodes | policy | " + " | ".join(ESTIMATOR_LABELS.get(e, e)
                                                  for e in estimators) + " |",
              "|---|---|" + "---|" * len(estimators)]
    for size, row in summary.items():
        for policy, errors in row["ope_abs_error"].items():
            lines.append(f"| {int(size):,} | {policy} | " + " | ".join(
                f"{errors[e]['mean']:.4f}" for e in estimators) + " |")
    return "\n".join(lines) + "\n"


def _pm(stats: dict[str, float]) -> str:
    return f"{stats['mean']:.4f} ± {stats['sd']:.4f}"


def plot_value(summary: dict[str, Any], references: dict[str, float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [int(s) for s in summary]
    figure, axis = plt.subplots(figsize=(7, 4.5))
    mean = np.array([summary[str(s)]["planned_value"]["mean"] for s in sizes])
    sd = np.array([summary[str(s)]["planned_value"]["sd"] for s in sizes])
    axis.plot(sizes, mean, "o-", color="C0", label="biowm plan (choices from logs)")
    axis.fill_between(sizes, mean - sd, mean + sd, color="C0", alpha=0.2)
    for index, name in enumerate(summary[str(sizes[0])]["ablation"]):
        values = [summary[str(s)]["ablation"][name]["mean"] for s in sizes]
        axis.plot(sizes, values, ".--", lw=1, color=f"C{index + 2}", alpha=0.7, label=name)
    for name, style in (("optimal", "k-"), ("clinician", "r-"), ("random", "r:")):
        axis.axhline(references[name], linestyle=style[1:], color=style[0], lw=1,
                     label=f"{name} {references[name]:.4f}")
    axis.set_xscale("log")
    axis.set_xlabel("logged clinician episodes")
    axis.set_ylabel("exact value (probability of survival)")
    axis.set_title("ICU-Sepsis: offline planning from clinician logs")
    axis.legend(fontsize=7, loc="upper left")
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=120)
    plt.close(figure)


def run_benchmark(out: Path, settings: SepsisBenchmarkSettings, log: Any = print
                  ) -> dict[str, Any]:
    """Every (size, seed) cell, seed-major so an interrupted run covers every size."""
    out = check_writable_dir(out)
    started = time.perf_counter()
    references = reference_values()
    jobs = [CellJob(size, seed, settings, progress=settings.workers == 1)
            for seed in settings.seeds for size in settings.episodes]
    cells: list[CellResult] = []
    for cell in ordered(make_executor(settings.workers).imap(run_cell, jobs)):
        log(f"{cell.episodes} episodes, seed {cell.seed}: planned {cell.planned_value:.4f} "
            f"({cell.prior}, α={cell.concentration:g}, {cell.pessimism}; {cell.seconds:.0f} s)")
        cells.append(cell)
        _save_policy(out, cell)
        _write(out, settings, cells, references, started, complete=len(cells) == len(jobs))
    return json.loads((out / "results.json").read_text())


def _save_policy(out: Path, cell: CellResult) -> None:
    """The planned policy of a cell, so estimators can be re-scored without re-planning."""
    if cell.policy is None:
        return
    folder = out / "policies"
    folder.mkdir(exist_ok=True)
    with atomic_path(folder / f"planned_{cell.episodes}_seed{cell.seed}.npy") as temporary, \
            open(temporary, "wb") as handle:
        np.save(handle, cell.policy)


def _write(out: Path, settings: SepsisBenchmarkSettings, cells: list[CellResult],
           references: dict[str, float], started: float, complete: bool) -> None:
    summary = summarise(cells, references)
    results = {
        "complete": complete,
        "settings": asdict(settings),
        "references_exact": references,
        "references_published": REFERENCE_VALUES,
        "how_choices_were_made": (
            "prior (state-pooled vs neural) and prior strength α: held-out log-likelihood of "
            "one episode fold of the planning logs; pessimism: cross-fitted model-based OPE "
            "on held-out folds of the planning logs; OPE estimates: a separate batch of "
            "clinician episodes (half the planning size) never used for planning; the true "
            "tables only score."),
        "sizes": summary,
        "cells": [{k: v for k, v in asdict(c).items() if k != "policy"} for c in cells],
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    manifest = Manifest.create("benchmark", {"benchmark": "sepsis", **asdict(settings)},
                               seed=settings.seeds[0])
    results["manifest"] = json.loads(manifest.to_json())
    atomic_write_text(out / "results.json", json.dumps(json_ready(results), indent=2))
    atomic_write_text(out / "tables.md", markdown_tables(summary, references))
    plot_value(summary, references, out / "value_vs_data.png")
