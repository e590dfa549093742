"""Simulated patient-days per second: biowm's batched UVA/Padova vs simglucose 0.2.11.

Both simulators replay the same per-minute insulin and carbohydrate inputs (the 24-hour
reference scenarios of tests/fixtures/glucose_reference, tiled over N subjects). simglucose
steps one patient at a time (its T1DPatient with scipy's dopri5), so its per-patient-day
rate is measured on a few patients and does not depend on N; biowm steps all N subjects
at once, eager and with `torch.compile`. A second part runs the cohort data engine CLI for
10,000 patient-days at 5-minute CGM resolution into Parquet and records its peak memory.

    .venv/bin/python benchmarks/sim_throughput.py --out runs/bench/throughput

Prints a table and writes OUT/results.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from biowm.core.io import atomic_write_text, check_writable_dir
from biowm.core.manifest import Manifest
from biowm.domains.glucose.replay import ReplayInputs, read_replay_inputs, replay
from biowm.domains.glucose.simulator import GlucoseSimulator

ROOT = Path(__file__).resolve().parents[1]
INPUTS = ROOT / "tests" / "fixtures" / "glucose_reference" / "inputs.csv"
sys.path.insert(0, str(Path(__file__).resolve().parent))


def simglucose_rate(patients: int) -> dict[str, float]:
    """simglucose patient-days per second over the first `patients` reference patients."""
    from simglucose_env import ensure_simglucose_python

    python = ensure_simglucose_python()
    with tempfile.TemporaryDirectory() as tmp:
        timing = Path(tmp) / "timing.json"
        subprocess.run(
            [str(python), str(ROOT / "benchmarks" / "simglucose_worker.py"),
             "--inputs", str(INPUTS), "--out", str(Path(tmp) / "out.csv"),
             "--timing-json", str(timing), "--max-patients", str(patients)],
            check=True,
        )
        return json.loads(timing.read_text())


def tiled(inputs: ReplayInputs, n: int) -> ReplayInputs:
    index = torch.arange(n) % len(inputs.patients)
    return ReplayInputs(
        patients=[inputs.patients[i] for i in index.tolist()],
        carbs_g_per_min=inputs.carbs_g_per_min[index].clone(),
        insulin_u_per_min=inputs.insulin_u_per_min[index].clone(),
        lengths=[inputs.lengths[i] for i in index.tolist()],
    )


def biowm_rate(inputs: ReplayInputs, compiled: bool) -> float:
    """Patient-days per second replaying `inputs` (one day each) in one batch."""
    sim = GlucoseSimulator(compiled=compiled)
    if compiled:  # compile (or load from cache) for this batch size before timing
        replay(ReplayInputs(inputs.patients, inputs.carbs_g_per_min[:, :3],
                            inputs.insulin_u_per_min[:, :3], [3] * len(inputs.patients)), sim)
    start = time.perf_counter()
    replay(inputs, sim)
    wall = time.perf_counter() - start
    return len(inputs.patients) * inputs.carbs_g_per_min.shape[1] / 1440.0 / wall


def cohort_memory(n: int, out_dir: Path) -> dict[str, float]:
    """Run the cohort CLI for `n` patient-days; peak RSS of that process and wall time."""
    target = out_dir / "cohort_10k.parquet"
    code = (
        "import resource, sys, time\n"
        "from biowm.cli import run\n"
        "t = time.perf_counter()\n"
        f"rc = run(['simulate', 'glucose', '--n', '{n}', '--days', '1', '--controller',"
        f" 'clinician', '--out', r'{target}'])\n"
        "print('RESULT', rc, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,"
        " time.perf_counter() - t)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT"))
    _, rc, maxrss_kb, wall = line.split()
    return {
        "patient_days": float(n),
        "exit_code": int(rc),
        "peak_rss_mb": int(maxrss_kb) / 1024.0,
        "wall_s": float(wall),
        "parquet_mb": target.stat().st_size / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/bench/throughput"))
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 100, 1000, 10000])
    parser.add_argument("--simglucose-patients", type=int, default=3)
    parser.add_argument("--memory-patients", type=int, default=10000)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    out = check_writable_dir(args.out)
    torch.set_num_threads(args.threads)
    console = Console(width=120)

    console.print(f"simglucose 0.2.11: timing {args.simglucose_patients} patient-days ...")
    reference = simglucose_rate(args.simglucose_patients)
    ref_rate = reference["patient_days_per_s"]
    inputs = read_replay_inputs(INPUTS, patient=None)
    rows = []
    for n in args.sizes:
        batch = tiled(inputs, n)
        eager = biowm_rate(batch, compiled=False)
        fused = biowm_rate(batch, compiled=True)
        rows.append({
            "patients": n,
            "eager_patient_days_per_s": eager,
            "compiled_patient_days_per_s": fused,
            "speedup_eager": eager / ref_rate,
            "speedup_compiled": fused / ref_rate,
        })
        console.print(f"  {n:>6} patients: eager {eager:9.1f}, compiled {fused:9.1f} pd/s")
    memory = cohort_memory(args.memory_patients, out)

    table = Table(title="Patient-days per second, 1 simulated day each, same inputs")
    for column in ("patients", "simglucose", "biowm eager", "biowm compiled", "× eager",
                   "× compiled"):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(
            str(row["patients"]), f"{ref_rate:.3f}", f"{row['eager_patient_days_per_s']:.1f}",
            f"{row['compiled_patient_days_per_s']:.1f}", f"{row['speedup_eager']:.0f}",
            f"{row['speedup_compiled']:.0f}",
        )
    console.print(table)
    console.print(
        f"cohort CLI, {memory['patient_days']:.0f} patient-days (clinician policy, 5-min CGM)"
        f" -> Parquet: peak RSS {memory['peak_rss_mb']:.0f} MB, wall {memory['wall_s']:.1f} s,"
        f" file {memory['parquet_mb']:.1f} MB"
    )
    results = {
        "simglucose": reference,
        "biowm": rows,
        "cohort_memory": memory,
        "torch_threads": args.threads,
        "machine": {"cpus": len(__import__("os").sched_getaffinity(0)),
                    "python": platform.python_version()},
        "manifest": json.loads(Manifest.create("benchmark", vars(args) | {"out": str(out)})
                               .to_json()),
    }
    atomic_write_text(out / "results.json", json.dumps(results, indent=2) + "\n")
    (out / "cohort_10k.parquet").unlink(missing_ok=True)
    (out / "cohort_10k.manifest.json").unlink(missing_ok=True)
    console.print(f"wrote {out / 'results.json'}")


if __name__ == "__main__":
    main()
