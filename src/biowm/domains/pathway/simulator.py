"""A pathway model behind biowm's `Simulator` protocol (reset / step / observe), e.g. for the
Gymnasium adapter or closed-loop planning with a dose chosen at every step.

State: `species [B, S]` (every floating species' concentration), `log_ratio [B, P]` (the
cell's parameter draw) and `time [B]`. libroadrunner integrates one cell at a time, so
`step` loops over cells on one compiled model; for open-loop schedules over many cells,
`simulate_population` is the faster path (parallel, no per-step overhead).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from biowm.core.errors import InvalidInputError
from biowm.core.simulator import State
from biowm.core.space import Channel, Space
from biowm.domains.pathway.interventions import Control, DoseSchedule
from biowm.domains.pathway.population import DEFAULT_SIGMA, STATIC_PREFIX, draw_parameters
from biowm.domains.pathway.sbml import PathwayModel


class PathwaySimulator:
    """Virtual cells of `model` stepped under the doses of `controls` (actions, in their
    declared ranges); observations are the `observe` species' concentrations."""

    def __init__(self, model: PathwayModel, observe: Sequence[str] | None = None,
                 controls: Sequence[Control] = (), sigma: float = DEFAULT_SIGMA,
                 uncertain: Sequence[str] | None = None, default_dt: float = 1.0) -> None:
        self.model = model
        self.observed = model.check_species(model.species if observe is None else observe,
                                            "species to observe")
        self.controls = tuple(controls)
        self._targets = tuple(dict.fromkeys(t for c in self.controls for t in c.targets))
        model.check_parameters(self._targets, "intervention target parameter")
        self.sigma = sigma
        self.uncertain = uncertain
        self.obs_space = Space(tuple(Channel(s, "model concentration units")
                                     for s in self.observed))
        self.action_space = Space(tuple(Channel(c.name, c.unit, *c.dose_range)
                                        for c in self.controls))
        names = draw_parameters(model, 1, sigma, uncertain).names
        self.static_space = Space(tuple(Channel(f"{STATIC_PREFIX}{p}", "log ratio to model value")
                                        for p in names))
        self.time_unit = model.time_unit
        self.default_dt = default_dt
        self._runner = model.runner()
        self._species_index = [model.species.index(s) for s in self.observed]

    def reset(self, n: int | None = None, subjects: Sequence[str] | None = None,
              seed: int = 0) -> State:
        if subjects is not None:
            raise InvalidInputError("pathway cells are drawn by index; pass n, not subjects")
        n = 1 if n is None else n
        draws = draw_parameters(self.model, n, self.sigma, self.uncertain, seed)
        self._runner.resetAll()
        initial = np.array([self._runner.getValue(f"[{s}]") for s in self.model.species])
        return {"species": torch.from_numpy(np.tile(initial, (n, 1))),
                "log_ratio": torch.from_numpy(draws.log_ratio.copy()),
                "time": torch.zeros(n, dtype=torch.float64)}

    def step(self, state: State, action: torch.Tensor, dt: float) -> State:
        if dt <= 0:
            raise InvalidInputError(f"dt must be > 0, got {dt}")
        doses = action.detach().cpu().numpy().astype(np.float64).reshape(len(state["time"]), -1)
        self.action_space.validate(doses, "action")
        schedule = DoseSchedule(self.controls, np.array([0.0, dt]), doses[:, None, :])
        targets, factors = schedule.multipliers()
        assert targets == self._targets
        names = self.static_space.names
        drawn = [n.removeprefix(STATIC_PREFIX) for n in names]
        parameters = list(dict.fromkeys([*drawn, *self._targets]))
        base = np.array([self.model.parameters[p] for p in parameters])
        ratio = np.ones((len(doses), len(parameters)))
        ratio[:, :len(drawn)] = np.exp(state["log_ratio"].numpy())
        for j, target in enumerate(self._targets):
            ratio[:, parameters.index(target)] *= factors[:, 0, j]
        runner = self._runner
        ids = list(runner.model.getGlobalParameterIds())
        index = np.array([ids.index(p) for p in parameters], dtype=np.int32)
        dynamic = [i for i, s in enumerate(self.model.species)
                   if s not in self.model.rule_species]
        species = state["species"].numpy().copy()
        for b in range(len(doses)):
            runner.resetAll()
            for i in dynamic:
                runner.setValue(f"[{self.model.species[i]}]", float(species[b, i]))
            if index.size:
                runner.model.setGlobalParameterValues(index, base * ratio[b])
            t0 = float(state["time"][b])
            runner.simulate(times=[t0, t0 + dt])
            species[b] = [runner.getValue(f"[{s}]") for s in self.model.species]
        return {"species": torch.from_numpy(species), "log_ratio": state["log_ratio"],
                "time": state["time"] + dt}

    def observe(self, state: State, rng: torch.Generator | None = None) -> torch.Tensor:
        return state["species"][:, self._species_index]

    def static(self, state: State) -> torch.Tensor:
        return state["log_ratio"]
