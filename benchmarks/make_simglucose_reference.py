"""Generate the simglucose reference fixtures in tests/fixtures/glucose_reference/.

Writes deterministic 24-hour per-minute input scenarios for all 30 simglucose virtual
patients (inputs.csv), replays them through simglucose 0.2.11 in its own venv via
simglucose_worker.py (reference.csv), and writes a README describing both. Our own glucose
simulator is later checked against these trajectories.

Runs with the plain system ``python3`` and the stdlib only (scenarios use ``random.Random``
seeded per patient, so they are identical with or without numpy); biowm is not imported.

Usage: ``python3 benchmarks/make_simglucose_reference.py``
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import random
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from simglucose_env import (
    RUNTIME_REQUIREMENTS,
    SIMGLUCOSE_REQUIREMENT,
    ensure_simglucose_python,
)

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
WORKER = BENCH_DIR / "simglucose_worker.py"
DEFAULT_OUT_DIR = REPO_ROOT / "tests" / "fixtures" / "glucose_reference"
SEED = 20240611
MINUTES = 1440
EAT_RATE_G_PER_MIN = 5  # simglucose's T1DPatient.EAT_RATE; we never exceed it
# A patient whose simglucose BG falls below this is redrawn: near 0 mg/dL simglucose's
# non-negativity clamp on x[3] takes over, a non-smooth corner that makes a poor reference.
BG_FLOOR_MG_DL = 10.0
MAX_REDRAWS = 10
# Patients whose snack starts 20-40 min after a main meal ends: simglucose resets its
# gastric-emptying meal size (Dbar) whenever eating restarts, which this exercises.
CLOSE_SNACK_PATIENTS = frozenset(
    f"{cohort}#{i:03d}" for cohort in ("adolescent", "adult", "child") for i in (3, 8)
)
MAIN_MEALS = ("breakfast", "lunch", "dinner")
# (centre minute, +/- jitter, min grams, max grams)
MEAL_PLAN = {
    "breakfast": (7 * 60, 30, 40, 60),
    "lunch": (12 * 60, 30, 60, 80),
    "dinner": (18 * 60 + 30, 30, 70, 90),
}


@dataclass
class Meal:
    """One eating episode: start minute, grams, and how its bolus was given."""

    name: str
    start: int
    grams: int
    bolus_factor: float = 1.0  # 0 = missed, 2 = doubled

    @property
    def end(self) -> int:
        """First minute after the last carb minute (carbs arrive at 5 g/min)."""
        return self.start + math.ceil(self.grams / EAT_RATE_G_PER_MIN)


@dataclass
class Scenario:
    """One patient's day: meals, a correction bolus and a basal suspension."""

    patient: str
    basal_u_per_min: float
    cr_g_per_u: float
    meals: list[Meal]
    correction_minute: int
    correction_u: float
    suspend_start: int
    suspend_minutes: int
    carbs: list[float] = field(default_factory=list)
    insulin: list[float] = field(default_factory=list)


def fmt(x: float) -> str:
    """Format with at most 6 decimals and no trailing zeros (``5``, ``0.013936``)."""
    s = f"{x:.6f}".rstrip("0").rstrip(".")
    return "0" if s in ("", "-0") else s


def read_patient_params(python: Path) -> tuple[str, list[dict[str, object]]]:
    """Ask the worker (in the simglucose venv) for the version and per-patient params."""
    out = subprocess.run(
        [str(python), str(WORKER), "--print-params"], check=True, capture_output=True, text=True
    )
    data = json.loads(out.stdout)
    return str(data["simglucose_version"]), list(data["patients"])


def _draw(p: dict[str, object], rng: random.Random) -> Scenario:
    """Draw one candidate scenario for patient ``p`` (may violate spacing rules)."""
    name = str(p["Name"])
    meals = []
    for meal_name in MAIN_MEALS:
        centre, jitter, lo, hi = MEAL_PLAN[meal_name]
        meals.append(Meal(meal_name, centre + rng.randint(-jitter, jitter), rng.randint(lo, hi)))
    if name in CLOSE_SNACK_PATIENTS:
        after = meals[rng.choice((1, 2))]  # right after lunch or dinner
        meals.append(Meal("snack", after.end + rng.randint(20, 40), rng.randint(15, 25)))
    elif rng.random() < 0.6:
        centre = rng.choice((15 * 60 + 30, 21 * 60 + 30))
        meals.append(Meal("snack", centre + rng.randint(-30, 30), rng.randint(15, 25)))
    meals.sort(key=lambda m: m.start)

    missed, doubled = rng.sample(MAIN_MEALS, 2)
    by_name = {m.name: m for m in meals}
    by_name[missed].bolus_factor = 0.0
    by_name[doubled].bolus_factor = 2.0

    # Correction 90-150 min after the unbolused meal, sized for a 50-90 mg/dL drop.
    correction_minute = by_name[missed].start + rng.randint(90, 150)
    correction_u = round(rng.uniform(50.0, 90.0) / float(p["CF"]), 2)

    suspend_minutes = rng.randint(60, 120)
    if rng.random() < 0.5:  # overnight
        suspend_start = rng.randint(60, 300)
    else:  # afternoon, between lunch and dinner
        suspend_start = rng.randint(by_name["lunch"].end + 60, 16 * 60 + 30)
    return Scenario(
        patient=name,
        basal_u_per_min=float(p["u2ss"]) * float(p["BW"]) / 6000.0,
        cr_g_per_u=float(p["CR"]),
        meals=meals,
        correction_minute=correction_minute,
        correction_u=correction_u,
        suspend_start=suspend_start,
        suspend_minutes=suspend_minutes,
    )


def _valid(s: Scenario) -> bool:
    """Check spacing: no overlaps, correction away from meals, suspension free of boluses."""
    meals = sorted(s.meals, key=lambda m: m.start)
    if meals[0].start < 0 or meals[-1].end > MINUTES - 60:
        return False
    if any(b.start < a.end + 20 for a, b in zip(meals, meals[1:], strict=False)):
        return False
    c = s.correction_minute
    if any(m.start - 45 <= c < m.end + 45 for m in meals):
        return False
    lo, hi = s.suspend_start, s.suspend_start + s.suspend_minutes
    if any(m.start < hi + 30 and lo - 30 < m.end for m in meals):
        return False
    return not lo - 60 <= c < hi + 60


def make_scenario(p: dict[str, object], seed: int = SEED, redraw: int = 0) -> Scenario:
    """Draw a valid scenario for patient ``p`` and fill its per-minute inputs.

    ``redraw`` > 0 gives a fresh, still deterministic, draw (see BG_FLOOR_MG_DL).
    """
    rng = random.Random(f"{seed}:{p['Name']}" + (f":{redraw}" if redraw else ""))
    for _ in range(1000):
        s = _draw(p, rng)
        if _valid(s):
            break
    else:
        raise RuntimeError(f"no valid scenario for {p['Name']}")

    carbs = [0.0] * MINUTES
    insulin = [s.basal_u_per_min] * MINUTES
    for m in s.meals:
        left = m.grams
        for k in range(m.start, m.end):
            carbs[k] = float(min(EAT_RATE_G_PER_MIN, left))
            left -= EAT_RATE_G_PER_MIN
        insulin[m.start] += m.bolus_factor * m.grams / s.cr_g_per_u
    insulin[s.correction_minute] += s.correction_u
    for k in range(s.suspend_start, s.suspend_start + s.suspend_minutes):
        insulin[k] = 0.0
    # Round here so the CSV holds exactly what simglucose is fed.
    s.carbs = [float(fmt(x)) for x in carbs]
    s.insulin = [float(fmt(x)) for x in insulin]
    check_scenario(s)
    return s


def check_scenario(s: Scenario) -> None:
    """Assert the features every patient's day must contain."""
    factors = sorted(m.bolus_factor for m in s.meals)
    assert 3 <= len(s.meals) <= 4, s.patient
    assert 0.0 in factors and 2.0 in factors, s.patient
    assert max(s.carbs) <= EAT_RATE_G_PER_MIN, s.patient
    assert 60 <= s.suspend_minutes <= 120, s.patient
    sus = s.insulin[s.suspend_start : s.suspend_start + s.suspend_minutes]
    assert all(x == 0.0 for x in sus), s.patient
    assert s.correction_u > 0 and all(
        not (m.start <= s.correction_minute < m.end) for m in s.meals
    ), s.patient
    assert sum(s.carbs) == sum(m.grams for m in s.meals), s.patient


def write_inputs(path: Path, scenarios: list[Scenario]) -> None:
    """Write ``patient, minute, carbs_g_per_min, insulin_u_per_min`` rows."""
    with path.open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["patient", "minute", "carbs_g_per_min", "insulin_u_per_min"])
        for s in scenarios:
            for k in range(MINUTES):
                w.writerow([s.patient, k, fmt(s.carbs[k]), fmt(s.insulin[k])])


def summarize_reference(path: Path) -> dict[str, tuple[float, float, int]]:
    """Return per patient (min bg, max bg, count of NaN/negative bg or cgm values)."""
    stats: dict[str, tuple[float, float, int]] = {}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            bg, cgm = float(row["bg_mg_dl"]), float(row["cgm_noise_free_mg_dl"])
            lo, hi, bad = stats.get(row["patient"], (math.inf, -math.inf, 0))
            bad += sum(1 for v in (bg, cgm) if not math.isfinite(v) or v < 0)
            stats[row["patient"]] = (min(lo, bg), max(hi, bg), bad)
    return stats


def _hhmm(minute: int) -> str:
    """Format a minute of the day as HH:MM."""
    return f"{minute // 60:02d}:{minute % 60:02d}"


README_TEMPLATE = """\
# simglucose reference trajectories

Reference data for checking biowm's glucose simulator against simglucose {version}, the open
Python port of the UVA/Padova type 1 diabetes simulator.

- `inputs.csv`: `patient, minute, carbs_g_per_min, insulin_u_per_min`; 24 h ({minutes} min) of
  per-minute inputs for each of the 30 virtual patients, minutes counted from 00:00. Carbs
  never exceed 5 g/min, so simglucose eats exactly what is given each minute.
- `reference.csv`: `patient, minute, bg_mg_dl, cgm_noise_free_mg_dl`: the state at the START of
  each minute, before that minute's inputs act: plasma glucose `x[3] / Vg` and noise-free
  subcutaneous glucose `x[12] / Vg`, from `T1DPatient.withName(patient)` (default initial
  state) stepped once per minute with `Action(CHO=carbs, insulin=insulin)`. No sensor, pump
  or noise model is involved.

## How they were produced

```
python3 benchmarks/make_simglucose_reference.py
```

This creates `benchmarks/.simglucose-venv` (git-ignored) holding `{requirement}`, installed
`--no-deps` (its declared gym/gymnasium/pathos/matplotlib are not needed by the patient model),
plus
{runtime},
and replays the inputs with `benchmarks/simglucose_worker.py` inside it. Scenarios are drawn
per patient with the stdlib `random` module (seed {seed}), so reruns give identical files.

Each day: basal `u2ss*BW/6000` U/min every minute; breakfast 40-60 g near 07:00, lunch 60-80 g
near 12:00, dinner 70-90 g near 18:30 and, for most patients, a 15-25 g snack; meal boluses of
`grams/CR` U (CR from simglucose's Quest.csv) in the meal's first minute, on top of basal.
Every patient has one missed and one doubled (x2) meal bolus, a correction bolus 90-150 min
after the missed meal (50-90 mg/dL / CF), and a 60-120 min basal suspension (insulin exactly
0). For
{close}
the snack starts 20-40 min after lunch or dinner ends (simglucose resets its
gastric-emptying meal size when eating restarts). A patient whose simglucose BG fell below
{floor:g} mg/dL was redrawn with a new seed suffix (column `redraw`): near 0 mg/dL simglucose
clamps x[3] at zero, a non-smooth corner that makes a poor reference.

| patient | redraw | meals (start, grams, bolus) | correction | suspension | BG mg/dL |
| --- | --- | --- | --- | --- | --- |
{table}

## Attribution

simglucose, Copyright (c) 2017 Jinyu Xie, MIT License (https://github.com/jxx123/simglucose).
These trajectories were computed by simglucose; no simglucose code is included in this
repository.
"""


def write_readme(
    path: Path,
    version: str,
    scenarios: list[Scenario],
    stats: dict[str, tuple[float, float, int]],
    redraws: dict[str, int],
    seed: int = SEED,
) -> None:
    """Describe the fixtures, how they were made, and credit simglucose."""
    tag = {0.0: " missed", 2.0: " x2"}
    rows = []
    for s in scenarios:
        meals = ", ".join(
            f"{_hhmm(m.start)} {m.grams} g{tag.get(m.bolus_factor, '')}" for m in s.meals
        )
        lo, hi, bad = stats[s.patient]
        flag = f" ({bad} NaN/neg)" if bad else ""
        rows.append(
            f"| {s.patient} | {redraws[s.patient]} | {meals} "
            f"| {_hhmm(s.correction_minute)} {s.correction_u:g} U "
            f"| {_hhmm(s.suspend_start)} {s.suspend_minutes} min | {lo:.1f}..{hi:.1f}{flag} |"
        )
    text = README_TEMPLATE.format(
        version=version,
        minutes=MINUTES,
        requirement=SIMGLUCOSE_REQUIREMENT,
        runtime=", ".join(f"`{r}`" for r in RUNTIME_REQUIREMENTS),
        seed=seed,
        close=", ".join(sorted(CLOSE_SNACK_PATIENTS)),
        floor=BG_FLOOR_MG_DL,
        table="\n".join(rows),
    )
    path.write_text(text)


def run_worker(python: Path, inputs: Path, out: Path) -> dict[str, float]:
    """Replay ``inputs`` through simglucose into ``out``; return the worker's timing."""
    with tempfile.TemporaryDirectory() as tmp:
        timing_path = Path(tmp) / "timing.json"
        cmd = [str(python), str(WORKER), "--inputs", str(inputs), "--out", str(out)]
        subprocess.run([*cmd, "--timing-json", str(timing_path)], check=True)
        return dict(json.loads(timing_path.read_text()))


def _too_low(stats: dict[str, tuple[float, float, int]]) -> list[str]:
    """Patients whose BG fell below the floor or had NaN/negative values."""
    return [n for n, (lo, _, bad) in stats.items() if bad or not lo >= BG_FLOOR_MG_DL]


def main(argv: list[str] | None = None) -> int:
    """Build the venv if needed, write inputs, run the worker, write reference and README."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR)
    ap.add_argument("--seed", type=int, default=SEED)
    args = ap.parse_args(argv)

    python = ensure_simglucose_python()
    version, params = read_patient_params(python)
    by_name = {str(p["Name"]): p for p in params}
    redraws = dict.fromkeys(by_name, 0)
    scenarios = {n: make_scenario(p, args.seed) for n, p in by_name.items()}

    out_dir: Path = args.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    inputs, reference = out_dir / "inputs.csv", out_dir / "reference.csv"
    write_inputs(inputs, list(scenarios.values()))
    timing = run_worker(python, inputs, reference)
    low = _too_low(summarize_reference(reference))
    if low:
        # Redraw only the offending patients, screening them in a scratch dir, then redo
        # the full run so both fixtures come from one replay of the final inputs.csv.
        print(f"redrawing (BG < {BG_FLOOR_MG_DL} mg/dL): {low}", file=sys.stderr)
        with tempfile.TemporaryDirectory() as tmp:
            tmp_in, tmp_out = Path(tmp) / "in.csv", Path(tmp) / "out.csv"
            while low:
                for n in low:
                    redraws[n] += 1
                    if redraws[n] > MAX_REDRAWS:
                        raise RuntimeError(f"{n}: BG below floor after {MAX_REDRAWS} redraws")
                    scenarios[n] = make_scenario(by_name[n], args.seed, redraws[n])
                write_inputs(tmp_in, [scenarios[n] for n in low])
                run_worker(python, tmp_in, tmp_out)
                low = _too_low(summarize_reference(tmp_out))
        write_inputs(inputs, list(scenarios.values()))
        timing = run_worker(python, inputs, reference)
    stats = summarize_reference(reference)
    write_readme(
        out_dir / "README.md", version, list(scenarios.values()), stats, redraws, args.seed
    )
    print(
        f"wrote {inputs} and {reference}; simglucose {timing['wall_s']:.1f} s for "
        f"{timing['patient_days']:.0f} patient-days "
        f"({timing['wall_s'] / timing['patient_days']:.2f} s per patient-day); "
        f"redrawn: {({n: k for n, k in redraws.items() if k}) or 'none'}"
    )
    if _too_low(stats):
        print(f"WARNING: BG below floor: {_too_low(stats)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
