"""Median wall time of one MPC decision with the default settings.

Runs the closed loop for two simulated hours (24 decisions) with a trained world model, for
one patient and for a 20-patient cohort planned as one batch, and reports the median time
per decision (encoding the history, the CEM search over imagined futures, the shield).

    .venv/bin/python benchmarks/mpc_latency.py --model runs/bench/glucose/models/world_model \
        --out runs/bench/mpc_latency

Prints a table and writes OUT/results.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from biowm.core.io import atomic_write_text, check_writable_dir
from biowm.core.manifest import Manifest
from biowm.domains.glucose.control import MPCPolicy, run_closed_loop
from biowm.domains.glucose.patients import patient_table
from biowm.models import load_world_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("runs/bench/mpc_latency"))
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--hours", type=float, default=2.0)
    args = parser.parse_args()
    out = check_writable_dir(args.out)
    torch.set_num_threads(args.threads)
    model = load_world_model(args.model)
    table = patient_table()
    cohorts = {"1 patient": ["adolescent#001"],
               "20 patients": table.cohort("adolescent") + table.cohort("child")}
    rows = {}
    for label, patients in cohorts.items():
        policy = MPCPolicy(model)
        days = args.hours / 24.0
        steps = int(days * 288)
        run_closed_loop(policy, patients, 1, seed=1, steps=steps)
        seconds = policy.decision_seconds[1:]  # the first call pays one-off set-up costs
        rows[label] = {"patients": len(patients), "decisions": len(seconds),
                       "median_ms": 1000 * statistics.median(seconds),
                       "p90_ms": 1000 * sorted(seconds)[int(0.9 * (len(seconds) - 1))]}
    result = Table(title=f"MPC decision time ({args.threads} torch threads)")
    for column in ("cohort", "patients", "decisions", "median ms", "p90 ms"):
        result.add_column(column, justify="right")
    for label, row in rows.items():
        result.add_row(label, str(row["patients"]), str(row["decisions"]),
                       f"{row['median_ms']:.1f}", f"{row['p90_ms']:.1f}")
    Console().print(result)
    manifest = Manifest.create("benchmark", {"model": str(args.model), "threads": args.threads})
    payload = {"decision_time": rows, "mpc": policy.config.__dict__,
               "manifest": json.loads(manifest.to_json())}
    atomic_write_text(out / "results.json", json.dumps(payload, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
