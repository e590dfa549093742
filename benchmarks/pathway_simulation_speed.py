"""Per-trajectory cost of the pathway runner (libroadrunner), sequential and parallel.

Same work for every setting: n virtual cells (log-normal parameters, sigma 0.1) under
random 6-segment schedules of one control, 121 output points; the parallel run must give
the same numbers as the sequential one.

    python benchmarks/pathway_simulation_speed.py [--n 1000] [--workers 2] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from biowm.domains.pathway import (
    draw_parameters,
    load_model,
    random_schedule,
    simulate_population,
)
from biowm.domains.pathway.shipped import controls_for

SHARED_SBML = Path(__file__).resolve().parents[2] / "shared" / "sbml"
# (model, t_end in model time units, control)
CASES = [
    ("kholodenko2000", 6000.0, "MEKi"),
    ("geva_zatorsky2006", 72.0, "nutlin"),
    (str(SHARED_SBML / "BIOMD0000000010.xml"), 6000.0, "k7"),
    # Huang-Ferrell 1996: k7 is the catalytic constant of MAPK phosphorylation by MAPKK-PP.
    (str(SHARED_SBML / "BIOMD0000000009.xml"), 2000.0, "k7"),
]


def time_case(sbml: str, t_end: float, control: str, n: int, workers: int) -> dict:
    model = load_model(sbml)
    controls = controls_for(model, [control])
    draws = draw_parameters(model, n, 0.1, seed=0)
    schedule = random_schedule(controls, n, t_end, 6, seed=0)
    times = np.linspace(0.0, t_end, 121)
    row = {"model": model.name, "control": control, "n": n, "species": len(model.species)}
    reference = None
    for w in (1, workers):
        started = time.perf_counter()
        result = simulate_population(model, times, draws=draws, schedule=schedule, workers=w)
        seconds = time.perf_counter() - started
        row[f"ms_per_trajectory_workers{w}"] = round(1000 * seconds / n, 3)
        row["failed"] = int(result.failed.sum())
        if reference is None:
            reference = result.obs
        else:
            row["parallel_identical"] = bool(np.array_equal(reference, result.obs,
                                                            equal_nan=True))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    rows = [time_case(sbml, t_end, control, args.n, args.workers)
            for sbml, t_end, control in CASES
            if not sbml.endswith(".xml") or Path(sbml).exists()]
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for row in rows:
        print("| " + " | ".join(str(row.get(k, "")) for k in keys) + " |")
    if args.out:
        args.out.write_text(json.dumps({"cpu_count": os.cpu_count(), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
