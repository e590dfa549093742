"""Speed of the tumour data engine against a per-patient pure-Python generator.

The peer is the published generator's algorithm as it is structured there (Bica et al.
2020 / Causal Transformer `cancer_simulation.py`): a Python loop over patients and days
with NumPy scalar arithmetic and a per-day list comprehension over the 15-day diameter
window; written here from the equations for timing only (same work: 10,000 + 1,000
factual patients, 1,000 test patients with every one-step counterfactual and the
sliding-treatment projections). biowm generates the same data set vectorised in torch.

    python benchmarks/tumour_generator_speed.py --gamma 2 [--peer-patients 12000]

The peer can be timed on a subset (`--peer-patients`) and scaled linearly (its cost is
per patient). Prints a table and writes results.json (`--out`).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from biowm.domains.tumour.cohort import TEST_OFFSET, VAL_OFFSET, simulate_cohort
from biowm.domains.tumour.counterfactual import one_step_counterfactuals, sliding_counterfactuals
from biowm.domains.tumour.patients import sample_patients

K = 4 / 3 * math.pi * 15.0**3
DEATH = 4 / 3 * math.pi * 6.5**3
DMAX = 13.0


def diameter(v: float) -> float:
    return (v / (4 / 3 * math.pi)) ** (1 / 3) * 2


def peer_patient(rng: np.random.Generator, gamma: float, days: int, test: bool,
                 params: tuple[float, float, float, float]) -> None:
    """One patient the per-patient way (factual, plus counterfactuals when `test`)."""
    alpha, rho, beta_c, initial_volume = params
    beta = alpha / 10
    noise = 0.01 * rng.standard_normal(days + 6)
    u = rng.random((3, days))
    vol = np.zeros(days)
    chemo = np.zeros(days)
    vol[0] = initial_volume
    for t in range(days - 1):
        window = vol[max(t - 14, 0) : t + 1]
        mean_d = np.array([diameter(v) for v in window]).mean()
        p = 1 / (1 + np.exp(-gamma / DMAX * (mean_d - DMAX / 2)))
        c = 5.0 if u[0, t] < p else 0.0
        d = 2.0 if u[1, t] < p else 0.0
        chemo[t] = (chemo[t - 1] if t else 0.0) * np.exp(-np.log(2)) + c
        vol[t + 1] = vol[t] * (1 + rho * np.log(K / vol[t]) - beta_c * chemo[t]
                               - (alpha * d + beta * d**2) + noise[t + 1])
        vol[t + 1] = min(max(vol[t + 1], 0.0), DEATH)
        if test:
            for option in ((0, 0), (0, 1), (1, 0), (1, 1)):
                cc = (chemo[t - 1] if t else 0.0) * np.exp(-np.log(2)) + 5.0 * option[0]
                dd = 2.0 * option[1]
                _ = vol[t] * (1 + rho * np.log(K / vol[t]) - beta_c * cc
                              - (alpha * dd + beta * dd**2) + noise[t + 1])
            for k in range(10):
                v, cc = vol[t + 1], chemo[t]
                for step in range(5):
                    cc = cc * np.exp(-np.log(2)) + (5.0 if k == step else 0.0)
                    dd = 2.0 if k - 5 == step else 0.0
                    v = v * (1 + rho * np.log(K / (v + 1e-7) + 1e-7) - beta_c * cc
                             - (alpha * dd + beta * dd**2) + noise[t + 2 + step])
        if vol[t + 1] >= DEATH or u[2, t] < np.exp(-vol[t + 1] * 5.8e8):
            break


def run_peer(gamma: float, n_factual: int, n_test: int, days: int, seed: int) -> float:
    """Seconds for the per-patient loops (parameters drawn beforehand, untimed, from the
    same population as biowm's, so trajectories have the same lengths)."""
    rng = np.random.default_rng(seed)
    p = sample_patients(n_factual + n_test, seed)
    params = list(zip(p.alpha.tolist(), p.rho.tolist(), p.beta_c.tolist(),
                      p.initial_volume_cm3.tolist(), strict=True))
    started = time.perf_counter()
    for i in range(n_factual):
        peer_patient(rng, gamma, days, False, params[i])
    for i in range(n_test):
        peer_patient(rng, gamma, days, True, params[n_factual + i])
    return time.perf_counter() - started


def run_biowm(gamma: float, seed: int, days: int) -> float:
    started = time.perf_counter()
    simulate_cohort(10_000, gamma, seed, days)
    simulate_cohort(1_000, gamma, seed, days, offset=VAL_OFFSET)
    test = simulate_cohort(1_000, gamma, seed, days, offset=TEST_OFFSET)
    one_step_counterfactuals(test)
    sliding_counterfactuals(test)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gamma", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--peer-patients", type=int, default=12_000,
                        help="patients the peer actually runs (scaled to 12,000)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("runs/bench/tumour_generator"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    share = min(args.peer_patients, 12_000) / 12_000
    n_factual, n_test = round(11_000 * share), round(1_000 * share)
    if n_test < 1:
        parser.error("--peer-patients must be at least 12 (the peer keeps the 11:1 mix)")
    peer_measured = run_peer(args.gamma, n_factual, n_test, args.days, args.seed)
    peer = peer_measured / share
    ours = min(run_biowm(args.gamma, args.seed, args.days) for _ in range(3))
    results = {"gamma": args.gamma, "threads": args.threads, "peer_patients_run":
               n_factual + n_test, "peer_seconds_12000": round(peer, 2),
               "biowm_seconds_12000": round(ours, 3), "speedup": round(peer / ours, 1)}
    print("| generator | 12,000 patients + test counterfactuals (s) |")
    print("|---|---|")
    print(f"| per-patient Python (published structure) | {peer:.2f} |")
    print(f"| biowm (vectorised torch) | {ours:.3f} |")
    print(f"speed-up: {peer / ours:.1f}×")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
