"""The ICU-Sepsis MDP (Choudhary et al., 2024), read from the `icu-sepsis` package's tables.

ICU-Sepsis is built from real MIMIC-III sepsis admissions: 716 states (713 patient-state
clusters, then death, survival and an absorbing state), 25 actions (5 IV-fluid × 5
vasopressor levels, action = 5·fluid + vasopressor), reward 1 on entering "survival",
undiscounted. The package (MIT) ships its tables in `icu_sepsis/envs/assets/dynamics.npz`.
Importing the package would import the legacy `gym`, so we never import it: we locate
the installed distribution's asset file through `importlib.metadata` and read the arrays
with numpy. These true tables are used only to simulate logs and to *score* policies.
"""

from __future__ import annotations

import importlib.metadata
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from biowm.core.errors import InvalidInputError
from biowm.models.tabular_mdp import TabularMDP

N_STATES, N_ACTIONS, N_FEATURES = 716, 25, 47
DEATH, SURVIVAL, ABSORBING = 713, 714, 715
TERMINAL_STATES = (DEATH, SURVIVAL, ABSORBING)
EPISODE_STEP_LIMIT = 500  # the package's TimeLimit
ASSET = "icu_sepsis/envs/assets/dynamics.npz"
PACKAGE = "icu-sepsis"
ASSET_ENV = "BIOWM_ICU_SEPSIS_TABLES"
REFERENCE_VALUES = {"random": 0.7801, "clinician": 0.7818, "optimal": 0.8751}


@dataclass(frozen=True)
class SepsisTables:
    """The true ICU-Sepsis tables: dynamics, start distribution, clinicians' policy,
    per-state features (cluster centres) and SOFA scores."""

    transitions: np.ndarray  # [S, A, S]
    initial: np.ndarray  # [S]
    clinician_policy: np.ndarray  # [S, A]
    state_features: np.ndarray  # [S, 47]
    sofa: np.ndarray  # [S]

    def mdp(self) -> TabularMDP:
        return TabularMDP(self.transitions, reward_on_entry(), terminal_mask(), self.initial)


def reward_on_entry() -> np.ndarray:
    reward = np.zeros(N_STATES)
    reward[SURVIVAL] = 1.0
    return reward


def terminal_mask() -> np.ndarray:
    mask = np.zeros(N_STATES, dtype=bool)
    mask[list(TERMINAL_STATES)] = True
    return mask


def asset_path() -> Path:
    """Where the shipped tables are: `$BIOWM_ICU_SEPSIS_TABLES`, else the installed
    `icu-sepsis` distribution's asset (found without importing the package)."""
    override = os.environ.get(ASSET_ENV)
    if override:
        return Path(override)
    try:
        distribution = importlib.metadata.distribution(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise InvalidInputError(
            f"the ICU-Sepsis tables need the {PACKAGE!r} package: pip install {PACKAGE}==2.0.1"
        ) from None
    return Path(str(distribution.locate_file(ASSET)))


def _complete_rows(policy: np.ndarray) -> np.ndarray:
    """The shipped clinician policy has all-zero rows at terminal states; make them uniform
    so every row is a distribution (no action is ever taken there)."""
    empty = policy.sum(axis=1) == 0
    policy[empty] = 1.0 / policy.shape[1]
    return policy


@lru_cache(maxsize=2)
def _load(path: str) -> SepsisTables:
    try:
        data = np.load(path)
        tables = SepsisTables(
            transitions=data["tx_mat"].astype(np.float64),
            initial=data["d_0"].astype(np.float64),
            clinician_policy=_complete_rows(data["expert_policy"].astype(np.float64)),
            state_features=data["state_cluster_centers"].astype(np.float64),
            sofa=data["sofa_scores"].astype(np.float64),
        )
    except (OSError, KeyError, ValueError) as error:
        raise InvalidInputError(f"{path}: not the ICU-Sepsis tables ({error})") from None
    if tables.transitions.shape != (N_STATES, N_ACTIONS, N_STATES):
        raise InvalidInputError(f"{path}: transition table has shape "
                                f"{tables.transitions.shape}, expected "
                                f"{(N_STATES, N_ACTIONS, N_STATES)}")
    for array in tables.__dict__.values():
        array.setflags(write=False)
    return tables


def load_tables() -> SepsisTables:
    """The true ICU-Sepsis tables (cached, read-only)."""
    return _load(str(asset_path()))


def uniform_policy() -> np.ndarray:
    return np.full((N_STATES, N_ACTIONS), 1.0 / N_ACTIONS)
