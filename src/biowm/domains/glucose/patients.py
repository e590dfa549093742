"""The 30 virtual patients of the UVA/Padova 2008 academic simulator.

Parameters and steady-state initial conditions come from the published sets shipped in
`data/` (see data/README.md for source and licence); this module only loads and indexes
them as tensors.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import torch

from biowm.core.errors import InvalidInputError

COHORTS = ("adolescent", "adult", "child")
N_STATES = 13
INITIAL_STATE_COLUMNS = [f"x0_{i:2d}" for i in range(1, N_STATES + 1)]
# Model parameters used by the ODE, in the order of `PatientTable.params` columns.
MODEL_PARAMETERS = (
    "BW", "kabs", "kmax", "kmin", "b", "d", "Vg", "Vi", "Vmx", "Km0", "k1", "k2", "p2u",
    "m1", "m2", "m4", "m30", "ki", "kp1", "kp2", "kp3", "f", "ke1", "ke2", "Fsnc", "Vm0",
    "Ib", "kd", "ksc", "ka1", "ka2", "u2ss",
)
QUEST_COLUMNS = ("CR", "CF", "Age", "TDI")


@dataclass(frozen=True)
class PatientTable:
    """All patients: `names [P]`, `params [P, len(MODEL_PARAMETERS)]`, `x0 [P, 13]`, quest."""

    names: tuple[str, ...]
    params: torch.Tensor
    x0: torch.Tensor
    quest: torch.Tensor

    def column(self, name: str) -> torch.Tensor:
        return self.params[:, MODEL_PARAMETERS.index(name)]

    def quest_column(self, name: str) -> torch.Tensor:
        return self.quest[:, QUEST_COLUMNS.index(name)]

    def indices(self, names: Sequence[str]) -> torch.Tensor:
        """Row indices of `names`; an unknown name raises, listing the valid names."""
        lookup = {name: i for i, name in enumerate(self.names)}
        unknown = [n for n in names if n not in lookup]
        if unknown:
            raise InvalidInputError(
                f"unknown patient {unknown[0]!r}; valid patients: {', '.join(self.names)}"
            )
        return torch.tensor([lookup[n] for n in names], dtype=torch.long)

    def cohort(self, cohort: str) -> list[str]:
        """Patient names of `cohort` (adolescent, adult, child, or all)."""
        if cohort == "all":
            return list(self.names)
        if cohort not in COHORTS:
            raise InvalidInputError(
                f"unknown cohort {cohort!r}; choose one of {', '.join((*COHORTS, 'all'))}"
            )
        return [n for n in self.names if n.split("#")[0] == cohort]


def _read_csv(name: str) -> list[dict[str, str]]:
    text = resources.files("biowm.domains.glucose").joinpath("data").joinpath(name).read_text()
    return list(csv.DictReader(text.splitlines()))


@lru_cache(maxsize=1)
def patient_table() -> PatientTable:
    rows = _read_csv("vpatient_params.csv")
    quest = {row["Name"]: row for row in _read_csv("Quest.csv")}
    names = tuple(row["Name"] for row in rows)
    params = torch.tensor(
        [[float(row[p]) for p in MODEL_PARAMETERS] for row in rows], dtype=torch.float64
    )
    x0 = torch.tensor(
        [[float(row[c]) for c in INITIAL_STATE_COLUMNS] for row in rows], dtype=torch.float64
    )
    q = torch.tensor(
        [[float(quest[n][c]) for c in QUEST_COLUMNS] for n in names], dtype=torch.float64
    )
    return PatientTable(names=names, params=params, x0=x0, quest=q)
