"""A stochastic gene-regulatory-network simulator: the cell domain's data engine.

Each gene i is produced at rate `v_i · s_i · Π_j h_j(x_j)^A_ij + b_i` and degraded at rate
γ_i, where h_j is a Hill activation (x^n / (K^n + x^n)) or repression (K^n / (K^n + x^n))
by regulator j and A the signed regulatory graph (a few transcription factors regulate
everything else; products make regulation AND-like, so double perturbations interact
non-additively through shared targets). `s_i` is the perturbation's scaling of gene i's
production: 0 for a knockout, 1 − efficiency for a knockdown, a fold change for CRISPRa,
and a Hill dose–response for a drug that inhibits several genes.

A cell is a draw of extrinsic variation (log-normal scaling of every gene's production),
integrated with chemical-Langevin intrinsic noise (Euler–Maruyama) from the noise-free
steady state until it settles, then measured with a log-normal library size and Poisson
capture (so low expression drops out). The noise-free steady state of every perturbation
is the ground truth: effects, and genetic interactions of doubles, are known exactly.
All cells of all perturbations are simulated as one batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from biowm.core.errors import InvalidInputError
from biowm.core.space import Channel, Space

HILL_COEFFICIENT = 2.0


@dataclass(frozen=True)
class Network:
    """Kinetic parameters of `n_genes` genes and the signed regulator graph.

    `activation[i, j]` / `repression[i, j]` are 1 where regulator j activates / represses
    gene i (only the `regulators` columns are non-zero); `half_max[j]` is regulator j's
    Hill constant (in expression units).
    """

    gene_names: tuple[str, ...]
    max_rate: np.ndarray  # v_i
    basal_rate: np.ndarray  # b_i
    decay: np.ndarray  # γ_i
    half_max: np.ndarray  # K_j
    activation: np.ndarray  # [G, G]
    repression: np.ndarray  # [G, G]
    regulators: np.ndarray  # indices of transcription factors

    @property
    def n_genes(self) -> int:
        return len(self.gene_names)


def random_network(n_genes: int, seed: int, regulator_share: float = 0.1,
                   regulators_per_gene: tuple[int, int] = (1, 3)) -> Network:
    """A random network: ~10 % of genes are regulators, each gene gets 1–3 of them."""
    if n_genes < 10:
        raise InvalidInputError(f"a network needs at least 10 genes, got {n_genes}")
    rng = np.random.default_rng(seed)
    n_regulators = max(3, int(round(regulator_share * n_genes)))
    regulators = np.sort(rng.choice(n_genes, n_regulators, replace=False))
    activation = np.zeros((n_genes, n_genes))
    repression = np.zeros((n_genes, n_genes))
    low, high = regulators_per_gene
    for gene in range(n_genes):
        candidates = regulators[regulators != gene]
        count = min(int(rng.integers(low, high + 1)), candidates.size)
        chosen = rng.choice(candidates, count, replace=False)
        activating = rng.random(count) < 0.6
        activation[gene, chosen[activating]] = 1.0
        repression[gene, chosen[~activating]] = 1.0
    decay = rng.uniform(0.5, 1.5, n_genes)
    max_rate = decay * np.exp(rng.normal(np.log(20.0), 1.0, n_genes))
    basal_rate = 0.02 * max_rate
    network = Network(
        gene_names=tuple(f"G{i:04d}" for i in range(n_genes)), max_rate=max_rate,
        basal_rate=basal_rate, decay=decay, half_max=np.ones(n_genes), activation=activation,
        repression=repression, regulators=regulators,
    )
    # Hill constants at each regulator's unperturbed level, so regulation is responsive.
    level = steady_state(network, np.ones((1, n_genes)))[0]
    return Network(**{**network.__dict__, "half_max": np.maximum(level, 1e-3)})


def production(network: Network, expression: np.ndarray, scaling: np.ndarray) -> np.ndarray:
    """Production rates `[B, G]` at `expression [B, G]` with per-cell gene `scaling [B, G]`."""
    regulators = network.regulators
    ratio = (np.maximum(expression[:, regulators], 0.0) / network.half_max[regulators]
             ) ** HILL_COEFFICIENT
    log_active = np.log(ratio / (1.0 + ratio) + 1e-12)
    log_repress = -np.log1p(ratio)
    log_regulation = (log_active @ network.activation[:, regulators].T
                      + log_repress @ network.repression[:, regulators].T)
    return scaling * (network.max_rate * np.exp(log_regulation) + network.basal_rate)


def steady_state(network: Network, scaling: np.ndarray, iterations: int = 400,
                 tolerance: float = 1e-8) -> np.ndarray:
    """Noise-free steady states `[B, G]` by damped fixed-point iteration x = P(x)/γ."""
    expression = scaling * (network.max_rate + network.basal_rate) / network.decay / 2.0
    for _ in range(iterations):
        target = production(network, expression, scaling) / network.decay
        updated = 0.5 * expression + 0.5 * target
        if np.abs(updated - expression).max() <= tolerance * (1.0 + np.abs(expression).max()):
            return updated
        expression = updated
    return expression


@dataclass(frozen=True)
class Perturbation:
    """One condition: `name` (cell-eval convention, e.g. "G0001+G0007"), the production
    scaling of every gene `[G]`, and its kind ("control", "knockout", "knockdown",
    "activation", "double", "drug")."""

    name: str
    kind: str
    scaling: np.ndarray


def gene_perturbation(network: Network, genes: list[str], kind: str,
                      strength: float = 1.0) -> Perturbation:
    """Knockout (strength ignored), knockdown (`strength` = efficiency in (0, 1)) or CRISPRa
    (`strength` = fold change > 1) of one gene or several at once (a combination)."""
    index = {name: i for i, name in enumerate(network.gene_names)}
    unknown = [g for g in genes if g not in index]
    if unknown:
        raise InvalidInputError(f"unknown genes {unknown}; genes are named like "
                                f"{network.gene_names[0]}")
    scaling = np.ones(network.n_genes)
    factor = {"knockout": 0.0, "knockdown": 1.0 - strength, "activation": strength}.get(kind)
    if factor is None:
        raise InvalidInputError(f"kind must be knockout, knockdown or activation, got {kind!r}")
    if kind == "knockdown" and not 0.0 < strength < 1.0:
        raise InvalidInputError(f"knockdown efficiency must be in (0, 1), got {strength}")
    if kind == "activation" and strength <= 1.0:
        raise InvalidInputError(f"CRISPRa fold change must be > 1, got {strength}")
    for gene in genes:
        scaling[index[gene]] = factor
    return Perturbation("+".join(genes), "double" if len(genes) > 1 else kind, scaling)


def drug_perturbation(network: Network, name: str, targets: list[str], dose: float,
                      ic50: float, hill: float = 1.0, max_inhibition: float = 0.95
                      ) -> Perturbation:
    """A drug inhibiting the production of `targets` with an Emax dose–response."""
    if dose < 0 or ic50 <= 0:
        raise InvalidInputError(f"dose must be >= 0 and IC50 > 0, got {dose}, {ic50}")
    inhibition = max_inhibition * dose**hill / (ic50**hill + dose**hill)
    base = gene_perturbation(network, targets, "knockdown", 0.5)
    scaling = np.where(base.scaling < 1.0, 1.0 - inhibition, 1.0)
    return Perturbation(f"{name}@{dose:g}", "drug", scaling)


@dataclass(frozen=True)
class CellNoise:
    """Extrinsic (log-normal production scaling sd), intrinsic (Langevin) noise, and
    measurement: mean library size (UMIs per cell) and its log-normal sd."""

    extrinsic_sd: float = 0.15
    intrinsic: float = 1.0
    library_size: float = 5_000.0
    library_sd: float = 0.3
    settle_time: float = 6.0
    dt: float = 0.1


CHUNK_CELLS = 4096  # cells simulated per batch (fixed, so results do not depend on memory)


def simulate_cells(network: Network, perturbations: list[Perturbation], cells_each: int,
                   seed: int, noise: CellNoise | None = None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """UMI counts `[N, G]`, the perturbation index of each cell `[N]`, and the noise-free
    expression `[P, G]` of every perturbation (the ground truth)."""
    if cells_each < 1 or not perturbations:
        raise InvalidInputError("need at least one perturbation and one cell per perturbation")
    noise = noise or CellNoise()
    scaling = np.stack([p.scaling for p in perturbations])
    truth = steady_state(network, scaling)
    labels = np.repeat(np.arange(len(perturbations)), cells_each)
    counts = np.empty((labels.size, network.n_genes), dtype=np.float32)
    for chunk, start in enumerate(range(0, labels.size, CHUNK_CELLS)):
        rng = np.random.default_rng([seed, chunk])
        part = labels[start:start + CHUNK_CELLS]
        counts[start:start + part.size] = _measure(
            network, scaling[part], noise, rng)
    return counts, labels, truth


def _measure(network: Network, scaling: np.ndarray, noise: CellNoise,
             rng: np.random.Generator) -> np.ndarray:
    """One batch of cells: extrinsic draw, Langevin settling, library size and capture."""
    cell_scaling = scaling * np.exp(rng.normal(0.0, noise.extrinsic_sd, scaling.shape))
    expression = steady_state(network, cell_scaling, iterations=60)
    for _ in range(int(round(noise.settle_time / noise.dt))):
        produced = production(network, expression, cell_scaling)
        degraded = network.decay * expression
        jitter = np.sqrt(np.maximum(produced + degraded, 0.0) * noise.dt) * rng.standard_normal(
            expression.shape)
        expression = np.maximum(expression + (produced - degraded) * noise.dt
                                + noise.intrinsic * jitter, 0.0)
    n_cells = scaling.shape[0]
    library = noise.library_size * np.exp(rng.normal(-noise.library_sd**2 / 2, noise.library_sd,
                                                     n_cells))
    share = expression / np.maximum(expression.sum(axis=1, keepdims=True), 1e-12)
    return rng.poisson(share * library[:, None]).astype(np.float32)


class GeneNetworkSimulator:
    """A `Network` as a batched biowm `Simulator`: the state is each cell's expression and
    production scaling; the action `[B, G]` multiplies each gene's production (1 = no
    perturbation, 0 = knockout); observations are UMI counts."""

    static_space = Space()
    time_unit = "1/decay"
    default_dt = 1.0

    def __init__(self, network: Network, noise: CellNoise | None = None) -> None:
        self.network = network
        self.noise = noise or CellNoise()
        genes = network.gene_names
        self.obs_space = Space.of(*(Channel(g, "UMI", 0.0) for g in genes))
        self.action_space = Space.of(*(Channel(f"{g}_production_scale", "fold", 0.0, 100.0,
                                               default=1.0) for g in genes))
        self._rng = np.random.default_rng(0)

    def reset(self, n: int | None = None, subjects: Sequence[str] | None = None,
              seed: int = 0) -> dict[str, torch.Tensor]:
        n = len(subjects) if subjects is not None else n
        if n is None or n < 1:
            raise InvalidInputError("reset needs n >= 1 cells")
        self._rng = np.random.default_rng(seed)
        extrinsic = np.exp(self._rng.normal(0.0, self.noise.extrinsic_sd,
                                            (n, self.network.n_genes)))
        expression = steady_state(self.network, extrinsic)
        return {"expression": torch.from_numpy(expression),
                "extrinsic": torch.from_numpy(extrinsic)}

    def step(self, state: dict[str, torch.Tensor], action: torch.Tensor,
             dt: float = 1.0) -> dict[str, torch.Tensor]:
        self.action_space.validate(action, "action")
        scaling = state["extrinsic"].numpy() * action.double().numpy()
        expression = state["expression"].numpy()
        for _ in range(max(1, int(round(dt / self.noise.dt)))):
            produced = production(self.network, expression, scaling)
            degraded = self.network.decay * expression
            jitter = np.sqrt(np.maximum(produced + degraded, 0.0) * self.noise.dt
                             ) * self._rng.standard_normal(expression.shape)
            expression = np.maximum(expression + (produced - degraded) * self.noise.dt
                                    + self.noise.intrinsic * jitter, 0.0)
        return {"expression": torch.from_numpy(expression), "extrinsic": state["extrinsic"]}

    def observe(self, state: dict[str, torch.Tensor],
                rng: torch.Generator | None = None) -> torch.Tensor:
        expression = state["expression"].numpy()
        library = self.noise.library_size * np.exp(self._rng.normal(
            -self.noise.library_sd**2 / 2, self.noise.library_sd, expression.shape[0]))
        share = expression / np.maximum(expression.sum(axis=1, keepdims=True), 1e-12)
        return torch.from_numpy(self._rng.poisson(share * library[:, None]).astype(np.float64))

    def static(self, state: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.zeros(state["expression"].shape[0], 0)
