"""How far can per-state estimation go with N clinician episodes? An analysis, not a method.

Uses the TRUE ICU-Sepsis tables on purpose, to bound what any planner that learns each
state's transitions from the logs can reach (nothing here feeds `biowm plan sepsis`):

1. `known V*`: the optimal state values are handed over exactly, and only the one-step
   transitions T(s, a, ·) are estimated from the logs (hierarchical Dirichlet posterior
   mean, state-pooled prior, several prior strengths α); the policy is greedy in
   Σ T̂(s, a, s') V*(s') over logged actions. Its exact value bounds planners whose
   only error is the per-pair transition estimate.
2. `feature R²`: how much of the true advantage Q*(s, a) − mean_a Q*(s, a) over the
   clinicians' frequent actions a feature-based model can explain (5-fold CV, gradient
   boosting on the 47 state features + fluid/vasopressor levels), i.e. how much a model
   that generalises across states could add.

    .venv/bin/python benchmarks/sepsis_ceiling.py --episodes 10000 --seeds 5 \\
        --out runs/bench/sepsis_ceiling
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from biowm.core.io import atomic_write_text
from biowm.domains.sepsis.benchmark import logged_transitions
from biowm.domains.sepsis.mdp import DEATH, N_ACTIONS, N_STATES, load_tables
from biowm.models.tabular import count_transitions, pooled_prior_mean, posterior_mean
from biowm.models.tabular_mdp import policy_value
from biowm.plan.tabular import optimal_policy

ALPHAS = (1.0, 10.0, 100.0)


def known_value_greedy(episodes: int, seed: int) -> dict[str, float]:
    tables = load_tables()
    mdp = tables.mdp()
    best = optimal_policy(mdp)
    gain = best.values + mdp.reward_on_entry
    counts = count_transitions(logged_transitions(episodes, seed), N_STATES, N_ACTIONS)
    seen = counts.sum(axis=2) > 0
    results = {}
    for alpha in ALPHAS:
        q = posterior_mean(counts, pooled_prior_mean(counts), alpha) @ gain
        q = np.where(seen, q, -np.inf)
        choice = np.where(seen.any(axis=1), q.argmax(axis=1), 0)
        policy = np.zeros((N_STATES, N_ACTIONS))
        policy[np.arange(N_STATES), choice] = 1.0
        results[f"alpha {alpha:g}"] = policy_value(mdp, policy)
    return results


def feature_r2(folds: int = 5) -> float:
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.model_selection import cross_val_score

    tables = load_tables()
    q = optimal_policy(tables.mdp()).q[:DEATH]
    frequent = tables.clinician_policy[:DEATH] >= 0.1
    rows, targets = [], []
    for state in np.flatnonzero(frequent.sum(axis=1) >= 2):
        actions = np.flatnonzero(frequent[state])
        centre = q[state, actions].mean()
        for action in actions:
            rows.append(np.concatenate([tables.state_features[state], [action // 5, action % 5]]))
            targets.append(q[state, action] - centre)
    model = HistGradientBoostingRegressor(max_depth=3, max_iter=200, learning_rate=0.05)
    return float(cross_val_score(model, np.array(rows), np.array(targets), cv=folds,
                                 scoring="r2").mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=10_000)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("runs/bench/sepsis_ceiling"))
    args = parser.parse_args()
    per_seed = [known_value_greedy(args.episodes, seed) for seed in range(args.seeds)]
    summary = {name: {"mean": float(np.mean([r[name] for r in per_seed])),
                      "sd": float(np.std([r[name] for r in per_seed], ddof=1))
                      if args.seeds > 1 else 0.0} for name in per_seed[0]}
    try:
        r2: float | None = feature_r2()
    except ImportError:
        r2 = None
    print(f"ICU-Sepsis, {args.episodes} clinician episodes, {args.seeds} seeds: exact value "
          "of the greedy policy given the TRUE V* and estimated one-step transitions")
    print("| prior strength | value (mean ± sd) |\n|---|---|")
    for name, stats in summary.items():
        print(f"| {name} | {stats['mean']:.4f} ± {stats['sd']:.4f} |")
    print(f"feature R² of true advantages (5-fold CV): {r2}")
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "results.json", json.dumps(
        {"episodes": args.episodes, "seeds": args.seeds, "known_value_greedy": summary,
         "per_seed": per_seed, "feature_r2": r2}, indent=2))


if __name__ == "__main__":
    main()
