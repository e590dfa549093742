"""Replay a logged pump-and-meal record through virtual patients.

`inputs.csv` holds per-minute inputs: `minute` (0, 1, 2, … consecutive per patient),
`carbs_g_per_min` (0–5: the reference eating rate is 5 g/min), `insulin_u_per_min` (>= 0)
and optionally `patient` (several patients then replay as one batch). The output has, per
patient and minute, the state at the start of that minute, before its inputs act: plasma
glucose BG and noise-free subcutaneous (CGM) glucose. Every malformed row is refused with
its line number and column.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from biowm.core.errors import InvalidInputError
from biowm.core.io import atomic_path
from biowm.domains.glucose.model import EAT_RATE_G_PER_MIN
from biowm.domains.glucose.patients import patient_table
from biowm.domains.glucose.simulator import (
    INSULIN_CHANNEL,
    GlucoseSimulator,
    bg_mg_dl,
    gsub_mg_dl,
)

REQUIRED_COLUMNS = ("minute", "carbs_g_per_min", "insulin_u_per_min")
OUTPUT_COLUMNS = ("patient", "minute", "bg_mg_dl", "cgm_noise_free_mg_dl")
MAX_INSULIN_U_PER_MIN = INSULIN_CHANNEL.high


@dataclass
class ReplayInputs:
    """Per-patient input series, zero-padded to the longest: `[B, T]` each."""

    patients: list[str]
    carbs_g_per_min: torch.Tensor
    insulin_u_per_min: torch.Tensor
    lengths: list[int]


def _number(text: str, line: int, column: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InvalidInputError(
            f"line {line}: column {column!r} value {text!r} is not a number"
        ) from None
    if math.isnan(value) or math.isinf(value):
        raise InvalidInputError(f"line {line}: column {column!r} value {text!r} is not finite")
    return value


def read_replay_inputs(path: str | os.PathLike[str], patient: str | None) -> ReplayInputs:
    """Parse and validate `inputs.csv`; `patient` is required when it has no patient column."""
    source = Path(path)
    if not source.is_file():
        raise InvalidInputError(f"--replay {source}: file not found")
    if patient is not None:
        patient_table().indices([patient])  # an unknown --patient fails, listing valid names
    with open(source, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise InvalidInputError(
                f"{source}: line 1 (header): missing column {missing[0]!r}; required columns are "
                f"{', '.join(REQUIRED_COLUMNS)} (optional: patient)"
            )
        has_patient = "patient" in header
        if not has_patient and patient is None:
            raise InvalidInputError(
                f"{source}: line 1 (header): no 'patient' column, so --patient must name the "
                "virtual patient"
            )
        reader.fieldnames = header
        known = set(patient_table().names)
        series: dict[str, tuple[list[float], list[float]]] = {}
        for row in reader:
            # The physical line of the row's end (the reader skips blank lines).
            line = reader.line_num
            name = (row.get("patient") or "").strip() if has_patient else patient
            if has_patient and not name:
                raise InvalidInputError(f"line {line}: column 'patient' is empty")
            assert name is not None
            if has_patient and patient is not None and name != patient:
                continue
            if has_patient and name not in known:
                raise InvalidInputError(
                    f"line {line}: column 'patient' value {name!r} is not a virtual patient; "
                    f"valid patients: {', '.join(patient_table().names)}"
                )
            values = {}
            for column in REQUIRED_COLUMNS:
                text = row.get(column)
                if text is None or text.strip() == "":
                    raise InvalidInputError(f"line {line}: column {column!r} is empty")
                values[column] = _number(text.strip(), line, column)
            carbs_list, insulin_list = series.setdefault(name, ([], []))
            expected = len(carbs_list)
            if values["minute"] != expected:
                raise InvalidInputError(
                    f"line {line}: column 'minute' is {values['minute']:g} for patient {name!r}"
                    f", expected {expected} (minutes must be 0, 1, 2, … without gaps)"
                )
            for column in ("carbs_g_per_min", "insulin_u_per_min"):
                if values[column] < 0:
                    raise InvalidInputError(
                        f"line {line}: column {column!r} value {values[column]:g} is negative"
                    )
            if values["carbs_g_per_min"] > EAT_RATE_G_PER_MIN:
                raise InvalidInputError(
                    f"line {line}: column 'carbs_g_per_min' value {values['carbs_g_per_min']:g}"
                    f" exceeds the eating rate of {EAT_RATE_G_PER_MIN:g} g/min"
                )
            if values["insulin_u_per_min"] > MAX_INSULIN_U_PER_MIN:
                raise InvalidInputError(
                    f"line {line}: column 'insulin_u_per_min' value "
                    f"{values['insulin_u_per_min']:g} exceeds {MAX_INSULIN_U_PER_MIN:g} U/min"
                )
            carbs_list.append(values["carbs_g_per_min"])
            insulin_list.append(values["insulin_u_per_min"])
    if not series:
        wanted = f" for patient {patient!r}" if patient else ""
        raise InvalidInputError(f"{source}: no input rows{wanted}")
    patient_table().indices(list(series))
    names = list(series)
    lengths = [len(series[n][0]) for n in names]
    carbs = torch.zeros(len(names), max(lengths), dtype=torch.float64)
    insulin = torch.zeros_like(carbs)
    for i, name in enumerate(names):
        carbs[i, : lengths[i]] = torch.tensor(series[name][0], dtype=torch.float64)
        insulin[i, : lengths[i]] = torch.tensor(series[name][1], dtype=torch.float64)
    return ReplayInputs(names, carbs, insulin, lengths)


def replay(
    inputs: ReplayInputs, simulator: GlucoseSimulator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """BG and noise-free CGM `[B, T]` at the start of each minute, all patients at once."""
    sim = simulator or GlucoseSimulator()
    state = sim.reset(subjects=inputs.patients)
    b, t = inputs.carbs_g_per_min.shape
    bg = torch.empty(b, t, dtype=torch.float64)
    gsub = torch.empty(b, t, dtype=torch.float64)
    for minute in range(t):
        bg[:, minute] = bg_mg_dl(state)
        gsub[:, minute] = gsub_mg_dl(state)
        action = torch.stack(
            [inputs.insulin_u_per_min[:, minute], inputs.carbs_g_per_min[:, minute]], dim=1
        )
        state = sim.step(state, action, 1.0)
    return bg, gsub


def write_replay_csv(
    path: str | os.PathLike[str], inputs: ReplayInputs, bg: torch.Tensor, gsub: torch.Tensor
) -> None:
    """Write the replay output atomically (no partial file on failure)."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(OUTPUT_COLUMNS)
        bg_rows, gsub_rows = bg.tolist(), gsub.tolist()
        for i, name in enumerate(inputs.patients):
            for minute in range(inputs.lengths[i]):
                writer.writerow(
                    [name, minute, f"{bg_rows[i][minute]:.6f}", f"{gsub_rows[i][minute]:.6f}"]
                )
