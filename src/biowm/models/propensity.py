"""Treatment propensities and inverse-probability-of-treatment weights (IPTW).

Logged treatments depend on the history (sicker patients are treated more). A model fitted
by plain likelihood then learns from a training distribution in which treatment and
history are entangled, while counterfactual questions ask about treatments chosen
*regardless* of the history. Weighting each training target by

    w(t, k) = Π_{s=t}^{t+k}  q(a_s) / p(a_s | H_s)

(stabilised weights of marginal structural models, Robins et al. 2000; RMSNs, Lim et al.
2018) makes the weighted training data look like a sequentially randomised trial with
the same marginal treatment rates q: the target distribution of the counterfactual test.
p comes from a small recurrent classifier over the same history the world model sees;
weights are truncated at a training quantile and normalised to mean 1 (variance control).
Binary treatment channels only (a dose would need a density model).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from biowm.core.errors import InvalidInputError
from biowm.models.training import TrainConfig, train_module


class PropensityNetwork(nn.Module):
    """GRU over the history inputs -> logits of each binary treatment at every step."""

    def __init__(self, n_inputs: int, n_actions: int, hidden: int = 32):
        super().__init__()
        self.gru = nn.GRU(n_inputs, hidden, batch_first=True)
        self.head = nn.Linear(hidden, n_actions)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        every, _ = self.gru(inputs)
        return self.head(every)


@dataclass
class IPTWWeights:
    """Weights `[B, T, H]` for the targets k+1 steps after each origin t, and their recipe."""

    weights: torch.Tensor
    cap: float
    scale: float


def check_binary(actions: torch.Tensor, decided: torch.Tensor) -> None:
    values = actions[decided]
    if not ((values == 0) | (values == 1)).all():
        raise InvalidInputError(
            "deconfounding='iptw' needs binary (0/1) treatment channels; got other values"
        )


def fit_propensity(
    inputs: torch.Tensor, actions: torch.Tensor, decided: torch.Tensor,
    val_inputs: torch.Tensor, val_actions: torch.Tensor, val_decided: torch.Tensor,
    config: TrainConfig,
) -> PropensityNetwork:
    """Train p(a_t | H_t) by Bernoulli likelihood on the steps where a decision was made."""
    network = PropensityNetwork(inputs.shape[-1], actions.shape[-1])

    def loss(batch: list[torch.Tensor]) -> torch.Tensor:
        x, a, d = batch
        bce = nn.functional.binary_cross_entropy_with_logits(network(x), a, reduction="none")
        return (bce * d[..., None]).sum() / d.sum().clamp(min=1.0)

    train_module(network, loss, [inputs, actions, decided.float()],
                 [val_inputs, val_actions, val_decided.float()], config)
    network.eval()
    return network


@torch.no_grad()
def step_ratios(
    network: PropensityNetwork, inputs: torch.Tensor, actions: torch.Tensor,
    decided: torch.Tensor, marginal: torch.Tensor,
) -> torch.Tensor:
    """q(a_t) / p(a_t | H_t) per step `[B, T]` (1 where no decision was made)."""
    p = torch.sigmoid(network(inputs)).clamp(1e-3, 1 - 1e-3)
    chosen = torch.where(actions > 0.5, p, 1 - p)
    target = torch.where(actions > 0.5, marginal, 1 - marginal)
    ratio = (target / chosen).prod(dim=-1)
    return torch.where(decided, ratio, torch.ones_like(ratio))


def window_weights(ratios: torch.Tensor, horizon: int) -> torch.Tensor:
    """`[B, T, H]`: product of the step ratios from origin t through step t+k."""
    b, t = ratios.shape
    log_r = torch.cat([ratios.log(), torch.zeros(b, horizon)], dim=1)
    index = torch.arange(t)[:, None] + torch.arange(horizon)[None, :]
    return log_r[:, index].cumsum(dim=2).exp()


def truncate_and_normalise(
    weights: torch.Tensor, used: torch.Tensor, quantile: float,
    cap: float | None = None, scale: float | None = None,
) -> IPTWWeights:
    """Cap at the `quantile` of the used weights and rescale to mean 1 (or reuse a recipe)."""
    if cap is None:  # kthvalue: torch.quantile refuses more than 2**24 values
        values = weights[used].double().flatten()
        rank = max(1, min(len(values), math.ceil(quantile * len(values))))
        cap = float(values.kthvalue(rank).values)
    clipped = weights.clamp(max=cap)
    if scale is None:
        scale = float(clipped[used].mean())
    return IPTWWeights(clipped / scale, cap, scale)
