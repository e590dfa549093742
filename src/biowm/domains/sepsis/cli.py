"""`biowm simulate|train|plan|evaluate|benchmark sepsis`: ICU-Sepsis offline RL end to end."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from biowm.core.errors import InvalidInputError
from biowm.core.io import (
    atomic_path,
    atomic_write_text,
    check_writable,
    check_writable_dir,
    json_ready,
)
from biowm.core.manifest import Manifest, manifest_path_for
from biowm.core.trajectories import Trajectories
from biowm.domains.sepsis.mdp import (
    N_ACTIONS,
    N_STATES,
    TERMINAL_STATES,
    load_tables,
    reward_on_entry,
    uniform_policy,
)
from biowm.models.tabular import Transitions, transitions_from_trajectories
from biowm.models.tabular_mdp import check_policy

console = Console(stderr=True)
PESSIMISM_CHOICES = ("auto", "none", "penalty", "halt")


def _read_logs(path: Path) -> Transitions:
    if not path.is_file():
        raise InvalidInputError(f"--data {path}: no such file")
    return transitions_from_trajectories(Trajectories.from_parquet(path), N_STATES, N_ACTIONS)


def read_policy(path: Path) -> np.ndarray:
    """A `policy.npy` (716 × 25 action probabilities), refused unless well-formed."""
    if not path.is_file():
        raise InvalidInputError(f"--policy {path}: no such file")
    try:
        policy = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise InvalidInputError(f"--policy {path}: not a .npy array ({error})") from None
    check_policy(policy, N_STATES, N_ACTIONS)
    return np.asarray(policy, dtype=np.float64)


def _policy_for(name: str) -> np.ndarray:
    if name == "clinician":
        return load_tables().clinician_policy
    if name == "random":
        return uniform_policy()
    return read_policy(Path(name))


def simulate(
    out: Annotated[Path, typer.Option(help="Output Parquet logs (manifest written beside).")],
    episodes: Annotated[int, typer.Option(help="Number of logged episodes (patients).")] = 10_000,
    seed: Annotated[int, typer.Option(help="Seeds start states, actions and transitions.")] = 0,
    policy: Annotated[str, typer.Option(help="clinician, random, or a policy.npy file.")]
    = "clinician",
) -> None:
    """Log ICU-Sepsis episodes treated by the clinicians' policy (or another policy)."""
    from biowm.domains.sepsis.simulator import simulate_episodes, survival_rate

    if episodes < 1:
        raise InvalidInputError(f"--episodes must be >= 1, got {episodes}")
    if out.suffix != ".parquet":
        raise InvalidInputError(f"--out must end in .parquet, got {out}")
    check_writable(out)
    behaviour = _policy_for(policy)
    started = time.perf_counter()
    logs = simulate_episodes(behaviour, episodes, seed)
    manifest = Manifest.create("trajectories", {"domain": "sepsis", "episodes": episodes,
                                                "policy": policy}, seed=seed)
    logs.to_parquet(out, manifest)
    table = Table(title=f"ICU-Sepsis logs ({time.perf_counter() - started:.1f} s)")
    for column in ("episodes", "transitions", "survived", "file"):
        table.add_column(column)
    table.add_row(f"{episodes:,}", f"{int((logs.lengths - 1).sum()):,}",
                  f"{survival_rate(logs):.2%}", str(out))
    console.print(table)


def train(
    data: Annotated[Path, typer.Option(help="Logs from `biowm simulate sepsis`.")],
    out: Annotated[Path, typer.Option(help="Model directory to write.")],
    model: Annotated[str, typer.Option(help="dirichlet or neural.")] = "dirichlet",
    seed: Annotated[int, typer.Option(help="Seeds the validation split and training.")] = 0,
) -> None:
    """Learn a tabular world model from logs (20 % of episodes held out for its choices)."""
    from biowm.models.tabular import DirichletTabularModel
    from biowm.models.tabular_neural import NeuralTabularModel

    if model not in ("dirichlet", "neural"):
        raise InvalidInputError(f"--model must be dirichlet or neural, got {model!r}")
    check_writable_dir(out)
    transitions = _read_logs(data)
    heldout = np.random.default_rng(seed).random(transitions.first_states.shape[0]) < 0.2
    train_part, val_part = transitions.select_episodes(~heldout), transitions.select_episodes(
        heldout)
    if model == "dirichlet":
        world_model: DirichletTabularModel | NeuralTabularModel = DirichletTabularModel(
            N_STATES, N_ACTIONS, TERMINAL_STATES, reward_on_entry(), seed=seed)
        world_model.fit_transitions(train_part, val_part)
        # α chosen on the split; the counts then use every episode.
        world_model.fit_transitions(transitions)
    else:
        world_model = NeuralTabularModel(load_tables().state_features, N_ACTIONS,
                                         TERMINAL_STATES, reward_on_entry(), seed=seed)
        world_model.fit_transitions(train_part, val_part)
    world_model.save(out)
    console.print(f"{model} world model written to {out}")


def plan(
    data: Annotated[Path, typer.Option(help="Logs from `biowm simulate sepsis`.")],
    out: Annotated[Path, typer.Option(help="policy.npy to write (716 × 25 probabilities).")],
    seed: Annotated[int, typer.Option(help="Seeds folds and the neural prior.")] = 0,
    prior: Annotated[str, typer.Option(help="auto, pooled or neural.")] = "auto",
    pessimism: Annotated[str, typer.Option(help="auto (chosen by cross-fitted OPE), none, "
                                           "penalty or halt.")] = "auto",
    folds: Annotated[int, typer.Option(help="Episode folds for the choices.")] = 3,
) -> None:
    """Plan a treatment policy offline from logs, pessimistically, every choice from the logs.

    Writes the policy, `<out>.json` (choices, support, each off-support recommendation with
    its evidence) and a manifest."""
    from biowm.plan.offline import DEFAULT_CANDIDATES, OfflinePlannerConfig, plan_offline

    if out.suffix != ".npy":
        raise InvalidInputError(f"--out must end in .npy, got {out}")
    if pessimism not in PESSIMISM_CHOICES:
        raise InvalidInputError(f"--pessimism must be one of {PESSIMISM_CHOICES}, got "
                                f"{pessimism!r}")
    check_writable(out)
    transitions = _read_logs(data)
    candidates = tuple(c for c in DEFAULT_CANDIDATES if pessimism in ("auto", c.kind))
    config = OfflinePlannerConfig(prior=prior, candidates=candidates, folds=folds, seed=seed)
    result = plan_offline(transitions, N_STATES, N_ACTIONS, list(TERMINAL_STATES),
                          reward_on_entry(), load_tables().state_features, config)
    report = {
        "prior": result.prior, "concentration": result.model.concentration,
        "pessimism": result.pessimism.label(),
        "heldout_log_likelihood_by_prior": result.prior_log_likelihood,
        "pessimism_selection_heldout_value": result.selection,
        "states_with_data": result.states_with_data,
        "off_support_recommendations": len(result.off_support),
        "off_support_fraction": result.off_support_fraction,
        "off_support": [asdict(o) for o in result.off_support],
        "model_value": result.model_value,
    }
    with atomic_path(out) as temporary, open(temporary, "wb") as handle:
        np.save(handle, result.policy)
    atomic_write_text(out.with_suffix(".json"), json.dumps(json_ready(report), indent=2))
    manifest = Manifest.create("policy", {"domain": "sepsis", "data": str(data),
                                          **{k: v for k, v in report.items()
                                             if k != "off_support"}}, seed=seed)
    manifest.add_file(out)
    manifest.write(manifest_path_for(out))
    table = Table(title="ICU-Sepsis offline plan")
    for column in ("prior (α)", "pessimism", "model value", "off-support recs", "policy"):
        table.add_column(column)
    table.add_row(f"{result.prior} ({result.model.concentration:g})", report["pessimism"],
                  f"{report['model_value']:.4f}",
                  f"{len(result.off_support)} of {result.states_with_data} states", str(out))
    console.print(table)


def evaluate(
    policy: Annotated[Path, typer.Option(help="policy.npy to evaluate.")],
    data: Annotated[Path, typer.Option(help="Evaluation logs (not used for planning).")],
    out: Annotated[Path, typer.Option(help="Directory for results.json.")],
    seed: Annotated[int, typer.Option(help="Seeds the model-based estimator.")] = 0,
    exact: Annotated[bool, typer.Option(help="Also score on the true ICU-Sepsis tables.")]
    = True,
) -> None:
    """Off-policy evaluation of a policy from logs (WIS, FQE, model-based with pooled and
    neural priors, WDR), beside its exact value on the true tables."""
    from biowm.bench.ope import evaluate_off_policy, neural_evaluation_prior
    from biowm.models.tabular_mdp import policy_value

    target = read_policy(policy)
    check_writable_dir(out)
    logs = _read_logs(data)
    neural_prior = neural_evaluation_prior(logs, load_tables().state_features, N_ACTIONS,
                                           list(TERMINAL_STATES), reward_on_entry(), seed)
    estimates = evaluate_off_policy(logs, target, reward_on_entry(), list(TERMINAL_STATES),
                                    seed, neural_prior=neural_prior)
    truth = policy_value(load_tables().mdp(), target) if exact else None
    results = {"policy": str(policy), "data": str(data), "exact_value": truth,
               "estimates": {k: asdict(v) for k, v in estimates.items()}}
    atomic_write_text(out / "results.json", json.dumps(json_ready(results), indent=2))
    table = Table(title=f"Off-policy evaluation of {policy.name}")
    for column in ("estimator", "value", "90 % interval", "error vs exact"):
        table.add_column(column)
    for name, estimate in estimates.items():
        interval = "–" if np.isnan(estimate.low) else f"[{estimate.low:.4f}, {estimate.high:.4f}]"
        error = "–" if truth is None else f"{estimate.value - truth:+.4f}"
        table.add_row(name, f"{estimate.value:.4f}", interval, error)
    if truth is not None:
        table.add_row("exact (true tables)", f"{truth:.4f}", "", "")
    console.print(table)
    print(json.dumps({k: round(v.value, 4) for k, v in estimates.items()}))


def benchmark(
    out: Annotated[Path, typer.Option(help="Directory for results.json, tables.md, plot.")],
    episodes: Annotated[list[int] | None, typer.Option(
        help="Logged-episode counts (default 1000 3000 10000 30000 100000).")] = None,
    seeds: Annotated[int | None, typer.Option(help="Seeds per size (default 5; 1 quick).")]
    = None,
    quick: Annotated[bool, typer.Option(help="Small version for tests (seconds).")] = False,
    workers: Annotated[int | None, typer.Option(help="Worker processes (default 2).")] = None,
) -> None:
    """Exact value of offline plans vs data size, with OPE errors and the pessimism ablation."""
    from biowm.domains.sepsis.benchmark import SepsisBenchmarkSettings, run_benchmark

    settings = SepsisBenchmarkSettings.quick() if quick else SepsisBenchmarkSettings()
    if episodes:
        if min(episodes) < 10:
            raise InvalidInputError(f"--episodes must be >= 10, got {min(episodes)}")
        settings.episodes = tuple(episodes)
    if seeds is not None:
        if seeds < 1:
            raise InvalidInputError(f"--seeds must be >= 1, got {seeds}")
        settings.seeds = tuple(range(seeds))
    if workers is not None:
        if workers < 1:
            raise InvalidInputError(f"--workers must be >= 1, got {workers}")
        settings.workers = workers
    check_writable_dir(out)
    run_benchmark(out, settings, log=console.print)
    print((out / "tables.md").read_text())
    console.print(f"results written to {out / 'results.json'}; plot {out / 'value_vs_data.png'}")
