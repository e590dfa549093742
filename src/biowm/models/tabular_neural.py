"""Neural tabular world model: next-state probabilities from the states' feature vectors.

Each discrete state comes with a feature vector (e.g. the centre of a patient-state
cluster). A small network maps (features of s, one-hot a) to logits over next states, so
pairs the logs rarely or never tried borrow strength from similar states and similar
actions instead of falling back to a per-row count. Trained by cross-entropy on logged
transitions with early stopping on held-out transitions. Its table can also serve as the
prior mean of the Dirichlet model (`DirichletTabularModel.fit_transitions(prior_mean=…)`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from biowm.core.errors import InvalidInputError
from biowm.core.manifest import Manifest
from biowm.core.model_io import load_model_dir, save_model_dir
from biowm.core.trajectories import Trajectories
from biowm.core.world_model import FitReport
from biowm.models.registry import register_model
from biowm.models.tabular import TabularWorldModel, Transitions
from biowm.models.training import TrainConfig, train_module

DEFAULT_TRAINING = {"max_epochs": 60, "batch_size": 512, "learning_rate": 2e-3,
                    "weight_decay": 1e-4, "patience": 5}


class NextStateNetwork(nn.Module):
    """(state features, action one-hot) -> logits over next states."""

    def __init__(self, features: torch.Tensor, n_actions: int, hidden: int) -> None:
        super().__init__()
        mean, std = features.mean(dim=0), features.std(dim=0).clamp_min(1e-6)
        self.register_buffer("features", (features - mean) / std)
        self.n_actions = n_actions
        n_states, width = features.shape
        self.body = nn.Sequential(
            nn.Linear(width + n_actions, hidden), nn.SiLU(),
            nn.Linear(hidden, hidden), nn.SiLU(),
            nn.Linear(hidden, n_states),
        )

    def forward(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        one_hot = nn.functional.one_hot(action, self.n_actions).to(self.features.dtype)
        return self.body(torch.cat([self.features[state], one_hot], dim=-1))


@register_model("neural_tabular")
class NeuralTabularModel(TabularWorldModel):
    """A feature-conditioned next-state classifier behind the `WorldModel` protocol."""

    def __init__(
        self, state_features: np.ndarray, n_actions: int, terminal_states: Sequence[int],
        reward_on_entry: np.ndarray, hidden: int = 256, seed: int = 0,
    ) -> None:
        features = np.array(state_features, dtype=np.float64)
        if features.ndim != 2:
            raise InvalidInputError("state_features must be [n_states, n_features]")
        super().__init__(features.shape[0], n_actions, terminal_states, reward_on_entry, seed)
        self.hidden = hidden
        self.state_features = features
        torch.manual_seed(seed)
        self.network = NextStateNetwork(torch.from_numpy(features).float(), n_actions, hidden)
        self.training = TrainConfig(**DEFAULT_TRAINING, seed=seed,
                                    description="neural tabular model")
        self._table: np.ndarray | None = None

    def fit(self, train: Trajectories, val: Trajectories, **options: Any) -> FitReport:
        return self.fit_transitions(self.transitions(train), self.transitions(val), **options)

    def fit_transitions(self, train: Transitions, heldout: Transitions,
                        **options: Any) -> FitReport:
        """Cross-entropy on (s, a) -> s' with early stopping on `heldout` transitions."""
        self.training.update(options)
        if len(train) == 0 or len(heldout) == 0:
            raise InvalidInputError("the neural tabular model needs train and held-out transitions")

        def tensors(tr: Transitions) -> list[torch.Tensor]:
            return [torch.from_numpy(tr.state), torch.from_numpy(tr.action),
                    torch.from_numpy(tr.next_state)]

        def loss(batch: Sequence[torch.Tensor]) -> torch.Tensor:
            return nn.functional.cross_entropy(self.network(batch[0], batch[1]), batch[2])

        report = train_module(self.network, loss, tensors(train), tensors(heldout),
                              self.training)
        self.initial_counts = np.bincount(train.first_states, minlength=self.n_states).astype(
            np.float64)
        self._table = None
        return report

    @torch.no_grad()
    def transition_mean(self) -> np.ndarray:
        if self._table is None:
            self.network.eval()
            states = torch.arange(self.n_states).repeat_interleave(self.n_actions)
            actions = torch.arange(self.n_actions).repeat(self.n_states)
            probabilities = torch.softmax(self.network(states, actions).double(), dim=-1)
            table = probabilities.reshape(self.n_states, self.n_actions, self.n_states).numpy()
            self._table = self._fix_terminal(table)
        return self._table

    def save(self, directory: str | os.PathLike[str]) -> None:
        config = {**self._base_config("neural_tabular"), "hidden": self.hidden,
                  "training": self.training.to_dict()}
        tensors = {f"network.{k}": v for k, v in self.network.state_dict().items()}
        tensors["state_features"] = torch.from_numpy(self.state_features)
        tensors["reward_on_entry"] = torch.from_numpy(self.reward_on_entry)
        tensors["initial_counts"] = torch.from_numpy(self.initial_counts)
        card = "\n".join([
            "# Model card: neural tabular world model",
            "",
            f"- {self.n_states} states with {self.state_features.shape[1]} features, "
            f"{self.n_actions} actions; MLP width {self.hidden}",
            "- Next-state classifier trained by cross-entropy on logged transitions, early "
            "stopping on held-out transitions.",
            "",
            "## Limitations",
            "- Smooth in the state features: it cannot represent idiosyncrasies of single "
            "states that the features do not explain; use it as a prior for the Dirichlet "
            "model where data exist.",
            "",
        ])
        save_model_dir(directory, config, tensors,
                       Manifest.create("world_model", config, self.seed), card)

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> NeuralTabularModel:
        config, tensors, _ = load_model_dir(directory)
        model = cls(tensors["state_features"].numpy(), config["n_actions"],
                    config["terminal_states"], tensors["reward_on_entry"].numpy(),
                    config["hidden"], config["seed"])
        model.network.load_state_dict({k.removeprefix("network."): v for k, v in tensors.items()
                                       if k.startswith("network.")})
        model.initial_counts = tensors["initial_counts"].numpy()
        return model
