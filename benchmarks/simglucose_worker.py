"""Replay per-minute inputs through simglucose's T1DPatient to make reference trajectories.

Runs INSIDE the isolated simglucose venv (see simglucose_env.py): stdlib, numpy, pandas and
simglucose only, never biowm, so that the reference is independent of our code.

Input CSV columns: ``patient, minute, carbs_g_per_min, insulin_u_per_min`` with minutes
0..N-1 consecutive per patient. For each minute we record the state at the START of that
minute, before its inputs act (``bg = x[3] / Vg``, ``cgm_noise_free = x[12] / Vg``), then call
``patient.step(Action(CHO=carbs, insulin=insulin))``. Output CSV columns:
``patient, minute, bg_mg_dl, cgm_noise_free_mg_dl``.

Usage::

    python simglucose_worker.py --inputs in.csv --out out.csv [--timing-json t.json]
        [--max-patients K]
    python simglucose_worker.py --print-params   # JSON params of all 30 virtual patients
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import sys
import time
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd

MINUTES_PER_DAY = 1440
# simglucose eats announced carbs at 5 g/min; larger per-minute inputs would be re-spread.
MAX_CARBS_G_PER_MIN = 5.0
INPUT_COLUMNS = ("patient", "minute", "carbs_g_per_min", "insulin_u_per_min")


def import_simglucose() -> ModuleType:
    """Import ``simglucose.patient.t1dpatient`` without executing ``simglucose/__init__.py``.

    That ``__init__`` only registers a gym environment (``from gym... import register``) and
    gym is deliberately not installed. Registering an un-executed module object for the
    top-level package (with its real spec, path and loader, so ``pkg_resources`` still finds
    the bundled params CSVs) lets the patient submodule import normally.
    """
    if "simglucose" not in sys.modules:
        spec = importlib.util.find_spec("simglucose")
        if spec is None:
            raise SystemExit("simglucose is not installed in this interpreter")
        sys.modules["simglucose"] = importlib.util.module_from_spec(spec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pkg_resources deprecation noise
        from simglucose.patient import t1dpatient
    return t1dpatient


def patient_params_table(t1dpatient: ModuleType) -> pd.DataFrame:
    """Return simglucose's virtual-patient params joined with its Quest.csv (CR, CF, ...)."""
    params = pd.read_csv(t1dpatient.PATIENT_PARA_FILE)
    quest = pd.read_csv(Path(t1dpatient.PATIENT_PARA_FILE).with_name("Quest.csv"))
    return params.merge(quest, on="Name", how="left", validate="one_to_one")


def print_params(t1dpatient: ModuleType) -> None:
    """Print, as JSON, the per-patient numbers a scenario generator needs."""
    table = patient_params_table(t1dpatient)
    cols = ["Name", "BW", "u2ss", "Vg", "CR", "CF", "Age", "TDI"]
    records = [
        {c: (row[c] if c == "Name" else float(row[c])) for c in cols}
        for _, row in table[cols].iterrows()
    ]
    version = _simglucose_version()
    json.dump({"simglucose_version": version, "patients": records}, sys.stdout, indent=1)
    sys.stdout.write("\n")


def _simglucose_version() -> str:
    """Return the installed simglucose distribution version."""
    from importlib.metadata import version

    return version("simglucose")


def load_inputs(path: Path, max_patients: int | None) -> list[tuple[str, np.ndarray]]:
    """Read and validate the inputs CSV; return ``(patient, [[carbs, insulin], ...])`` pairs.

    Patients keep their order of first appearance in the file.
    """
    df = pd.read_csv(path, dtype={"patient": str})
    missing = [c for c in INPUT_COLUMNS if c not in df.columns]
    if missing:
        raise SystemExit(f"{path}: missing columns {missing}")
    out: list[tuple[str, np.ndarray]] = []
    for name in pd.unique(df["patient"]):
        if max_patients is not None and len(out) >= max_patients:
            break
        g = df[df["patient"] == name]
        minutes = g["minute"].to_numpy()
        if not np.array_equal(minutes, np.arange(len(g))):
            raise SystemExit(f"{path}: {name}: minutes must be 0..N-1 consecutive")
        u = g[["carbs_g_per_min", "insulin_u_per_min"]].to_numpy(dtype=float)
        if not np.isfinite(u).all() or (u < 0).any():
            raise SystemExit(f"{path}: {name}: inputs must be finite and >= 0")
        if (u[:, 0] > MAX_CARBS_G_PER_MIN).any():
            raise SystemExit(f"{path}: {name}: carbs above {MAX_CARBS_G_PER_MIN} g/min")
        out.append((str(name), u))
    return out


def replay(
    t1dpatient: ModuleType, name: str, inputs: np.ndarray, vg: float
) -> tuple[np.ndarray, float]:
    """Step one patient through ``inputs``; return start-of-minute [bg, cgm] and loop seconds.

    Patient construction (which reads CSVs with pandas) happens before the timer starts.
    """
    Action = t1dpatient.Action
    patient = t1dpatient.T1DPatient.withName(name)
    n = len(inputs)
    out = np.empty((n, 2))
    rows: list[tuple[float, float]] = [(float(c), float(i)) for c, i in inputs]
    t0 = time.perf_counter()
    for k, (carbs, insulin) in enumerate(rows):
        x = patient.state
        out[k, 0] = x[3]
        out[k, 1] = x[12]
        patient.step(Action(CHO=carbs, insulin=insulin))
    wall = time.perf_counter() - t0
    return out / vg, wall


def write_output(path: Path, results: list[tuple[str, np.ndarray]]) -> None:
    """Write ``patient, minute, bg_mg_dl, cgm_noise_free_mg_dl`` with 6 decimals."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        f.write("patient,minute,bg_mg_dl,cgm_noise_free_mg_dl\n")
        for name, traj in results:
            for minute, (bg, cgm) in enumerate(traj):
                f.write(f"{name},{minute},{bg:.6f},{cgm:.6f}\n")


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, replay all requested patients and write the outputs."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inputs", type=Path, help="per-minute inputs CSV")
    ap.add_argument("--out", type=Path, help="output trajectories CSV")
    ap.add_argument("--timing-json", type=Path, help="write stepping-loop timing here")
    ap.add_argument("--max-patients", type=int, help="replay only the first K patients")
    ap.add_argument("--print-params", action="store_true", help="print patient params JSON")
    args = ap.parse_args(argv)

    t1dpatient = import_simglucose()
    if args.print_params:
        print_params(t1dpatient)
        return 0
    if args.inputs is None or args.out is None:
        ap.error("--inputs and --out are required")

    vg_by_name = patient_params_table(t1dpatient).set_index("Name")["Vg"].to_dict()
    jobs = load_inputs(args.inputs, args.max_patients)
    unknown = [name for name, _ in jobs if name not in vg_by_name]
    if unknown:
        raise SystemExit(f"unknown patients: {unknown}")

    results: list[tuple[str, np.ndarray]] = []
    wall = 0.0
    minutes = 0
    for name, u in jobs:
        traj, dt = replay(t1dpatient, name, u, float(vg_by_name[name]))
        results.append((name, traj))
        wall += dt
        minutes += len(u)
        bad = ~np.isfinite(traj) | (traj < 0)
        note = f" ({int(bad.any(axis=1).sum())} minutes NaN/negative)" if bad.any() else ""
        print(
            f"{name}: {len(u)} min in {dt:.2f} s, bg {np.nanmin(traj[:, 0]):.1f}.."
            f"{np.nanmax(traj[:, 0]):.1f} mg/dL{note}",
            file=sys.stderr,
            flush=True,
        )
    write_output(args.out, results)

    if args.timing_json is not None:
        days = minutes / MINUTES_PER_DAY
        timing: dict[str, Any] = {
            "patient_days": days,
            "wall_s": wall,
            "patient_days_per_s": days / wall if wall > 0 else math.inf,
        }
        args.timing_json.parent.mkdir(parents=True, exist_ok=True)
        args.timing_json.write_text(json.dumps(timing, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
