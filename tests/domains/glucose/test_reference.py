"""Agreement with simglucose 0.2.11's T1DPatient (traces made by benchmarks/)."""

import csv
from pathlib import Path

import torch

from biowm.domains.glucose.replay import read_replay_inputs, replay

FIXTURES = Path(__file__).parents[2] / "fixtures" / "glucose_reference"


def test_replay_matches_simglucose_within_1_mg_dl_for_all_30_patients():
    inputs = read_replay_inputs(FIXTURES / "inputs.csv", patient=None)
    assert len(inputs.patients) == 30 and min(inputs.lengths) == 1440
    bg, gsub = replay(inputs)
    reference: dict[str, list[tuple[float, float]]] = {}
    with open(FIXTURES / "reference.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            reference.setdefault(row["patient"], []).append(
                (float(row["bg_mg_dl"]), float(row["cgm_noise_free_mg_dl"]))
            )
    for i, name in enumerate(inputs.patients):
        expected = torch.tensor(reference[name], dtype=torch.float64)
        assert expected.shape == (1440, 2)
        bg_error = float((bg[i] - expected[:, 0]).abs().max())
        gsub_error = float((gsub[i] - expected[:, 1]).abs().max())
        assert bg_error < 1.0, f"{name}: max |BG error| {bg_error:.3f} mg/dL"
        assert gsub_error < 1.0, f"{name}: max |Gsub error| {gsub_error:.3f} mg/dL"
