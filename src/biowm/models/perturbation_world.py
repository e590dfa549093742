"""biowm's perturbation world model for single-cell snapshots (no domain knowledge here).

A cell's log-normalised expression `[G]` is its latent basal state plus the effect of what
was done to it. The model learns, from training cells labelled by perturbation
("non-targeting" controls, single targets, combinations "A+B"):

- **perturbation effects derived from the genes**: each gene has an embedding (its loadings
  on the training expression's principal components); a single perturbation's effect is the
  common response to any perturbation plus a map of its target's embedding (so an unseen
  perturbation of a measured gene gets an effect), plus its own measured deviation,
  shrunk by empirical Bayes (per gene: between-perturbation variance against the sampling
  variance of the cell means) — a perturbation measured in few cells leans on the structure;
- **a combination operator that can represent interactions**: a double's effect is the sum
  of its singles plus a learned, symmetric, per-gene correction from the singles' effects
  on that gene, the control level of the gene and each single's effect on the other
  target (epistasis: A silencing B makes the double look like A);
- **ensemble uncertainty**: member 0 is fitted to all cells (the point prediction), the
  others to Poisson-bootstrap resamples of the cells; their spread is the model's
  uncertainty about each effect;
- **a decoder to cells**: given control cells from any context (their own basal states),
  each is moved by the effect on the genes whose effect is at least `gate_z` ensemble
  standard deviations from zero, floored at 0 (log1p of counts is never negative), so the
  new context's cell-to-cell variation is kept and noise-level effects are not invented.

Through the `WorldModel` protocol a snapshot is a one-step trajectory: observations are
the genes, actions a multi-hot vector over the perturbable vocabulary (two ones for "A+B"),
and `imagine` returns one sample per ensemble member.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from biowm.core.errors import InvalidInputError
from biowm.core.manifest import Manifest
from biowm.core.model_io import load_model_dir, save_model_dir
from biowm.core.space import Channel, Space
from biowm.core.trajectories import Trajectories
from biowm.core.world_model import Belief, FitReport, Forecast
from biowm.models.card import model_card
from biowm.models.perturbation import PerturbationPrediction
from biowm.models.registry import register_model

PAIR_FEATURES = 8


@dataclass
class PerturbationWorldConfig:
    """`components`: gene-embedding dimensions; `members`: ensemble size; `gate_z`: a
    gene moves only if |effect| ≥ gate_z × its uncertainty (the larger of the ensemble sd
    and, for measured perturbations, the standard error of the cell means); `shrink`:
    empirical-Bayes shrinkage of measured effects toward the structure (off by default:
    it cost discrimination on real data); `calibrate_structure`: weight the gene-embedding
    structure for unseen targets by its leave-one-out skill on the measured ones;
    `count_aware`: decode by `thin_to_mean`;
    `interaction_*`: the combination operator's network and its minibatch training."""

    control: str = "non-targeting"
    components: int = 10
    ridge: float = 0.1
    members: int = 5
    gate_z: float = 2.0
    shrink: bool = False
    count_aware: bool = True
    interaction_hidden: int = 32
    interaction_steps: int = 4000
    interaction_batch: int = 4096
    interaction_lr: float = 1e-2
    min_doubles: int = 5
    calibrate_structure: bool = True
    seed: int = 0


def _label_means(expression: torch.Tensor, index: torch.Tensor, weights: torch.Tensor,
                 n_labels: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Weighted per-label means, variances and effective cell counts (batched, no loop)."""
    genes = expression.shape[1]
    total = torch.zeros(n_labels, dtype=expression.dtype).index_add_(0, index, weights)
    sums = torch.zeros(n_labels, genes, dtype=expression.dtype).index_add_(
        0, index, weights[:, None] * expression)
    squares = torch.zeros(n_labels, genes, dtype=expression.dtype).index_add_(
        0, index, weights[:, None] * expression**2)
    count = total.clamp_min(1e-9)[:, None]
    mean = sums / count
    return mean, (squares / count - mean**2).clamp_min(0.0), total


def gene_embedding(expression: np.ndarray, components: int) -> np.ndarray:
    """Genes' loadings on the top principal components of the expression, `[G, k]`."""
    centred = expression - expression.mean(axis=0)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    k = min(components, vt.shape[0])
    return (vt[:k].T * singular[:k] / np.sqrt(max(expression.shape[0], 1))).astype(np.float64)


def _ordered_pair_features(first: torch.Tensor, second: torch.Tensor,
                           control_mean: torch.Tensor, silencing: torch.Tensor) -> torch.Tensor:
    """Per-gene features of an ordered pair `[D, G, 8]`: the singles' effects `[D, G]`,
    the gene's control level `[G]` and how far each single moves the other's target,
    relative to that target's control level (`silencing [D, 2]`, −1 = fully silenced)."""
    d, g = first.shape
    first_on_second = silencing[:, :1].expand(d, g)
    second_on_first = silencing[:, 1:].expand(d, g)
    return torch.stack([first, second, first * second, control_mean.expand(d, g),
                        first_on_second, second_on_first, second * first_on_second,
                        first * second_on_first], dim=-1)


class _Interaction(torch.nn.Module):
    """Per-gene correction to the sum of two singles' effects (shared over genes), made
    symmetric by summing the network over both orders of the pair."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(PAIR_FEATURES, hidden), torch.nn.SiLU(),
            torch.nn.Linear(hidden, hidden), torch.nn.SiLU(), torch.nn.Linear(hidden, 1))

    def forward(self, features: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return (self.net(features[0]) + self.net(features[1])).squeeze(-1)


@register_model("perturbation_world")
class PerturbationWorldModel:
    """Ensemble perturbation-response model of single cells (see the module docstring)."""

    step = 1.0

    def __init__(self, genes: list[str], config: PerturbationWorldConfig | None = None) -> None:
        if len(set(genes)) != len(genes):
            raise InvalidInputError("gene names must be unique")
        self.genes = list(genes)
        self.config = config or PerturbationWorldConfig()
        self.gene_index = {g: i for i, g in enumerate(self.genes)}
        self.vocabulary: list[str] = []
        self.seen_doubles: list[str] = []
        self.control_mean = np.zeros(len(genes))
        self.single_effects = np.zeros((0, 0, len(genes)))
        self.double_effects = np.zeros((0, 0, len(genes)))
        self.interactions: list[_Interaction] = []
        self.single_se = np.zeros((0, len(genes)))
        self.double_se = np.zeros((0, len(genes)))
        self.trained_labels: dict[str, int] = {}

    # ---------------------------------------------------------------- spaces
    @property
    def obs_space(self) -> Space:
        return Space(tuple(Channel(g, "log1p(counts per 10k)", 0.0) for g in self.genes))

    @property
    def action_space(self) -> Space:
        return Space(tuple(Channel(p, "targeted (0/1)", 0.0, 1.0) for p in self.vocabulary))

    @property
    def static_space(self) -> Space:
        return Space(())

    # ---------------------------------------------------------------- fitting
    def fit_cells(self, expression: np.ndarray, labels: np.ndarray) -> FitReport:
        """Learn from log-normalised cells `[N, G]` and their perturbation labels."""
        labels = np.asarray(labels).astype(str)
        cfg = self.config
        if expression.ndim != 2 or expression.shape[1] != len(self.genes):
            raise InvalidInputError(f"expression must be [cells, {len(self.genes)} genes], got "
                                    f"{expression.shape}")
        if not (labels == cfg.control).any():
            raise InvalidInputError(f"training data need control cells ({cfg.control!r})")
        names, index = np.unique(labels, return_inverse=True)
        names = [str(n) for n in names]
        singles = [n for n in names if n != cfg.control and "+" not in n]
        if not singles:
            raise InvalidInputError("training data need single perturbations")
        doubles = [n for n in names if n.count("+") == 1
                   and all(p in singles for p in n.split("+"))]
        self.vocabulary = sorted(set(singles) | set(self.genes))
        self.seen_doubles = doubles
        self.trained_labels = dict(zip(names, np.bincount(index).tolist(), strict=True))
        embedding = gene_embedding(expression, cfg.components)
        self.control_mean = expression[labels == cfg.control].mean(axis=0).astype(np.float64)
        x = torch.from_numpy(expression.astype(np.float64))
        idx = torch.from_numpy(index)
        generator = torch.Generator().manual_seed(cfg.seed)
        singles_all, doubles_all, self.interactions, losses = [], [], [], []
        self.single_se = np.zeros((len(self.vocabulary), len(self.genes)))
        self.double_se = np.zeros((len(doubles), len(self.genes)))
        for member in range(cfg.members):
            weights = torch.poisson(torch.ones(len(labels), dtype=torch.float64),
                                    generator=generator) if member else \
                torch.ones(len(labels), dtype=torch.float64)
            mean, var, count = _label_means(x, idx, weights, len(names))
            single, double, net, loss = self._fit_member(
                names, mean.numpy(), var.numpy(), count.numpy(), singles, doubles, embedding,
                member=member)
            singles_all.append(single)
            doubles_all.append(double)
            self.interactions.append(net)
            losses.append(loss)
        self.single_effects = np.stack(singles_all)
        self.double_effects = np.stack(doubles_all)
        return FitReport(epochs=cfg.interaction_steps, best_val_loss=float(np.mean(losses)),
                         stopped_because="fixed interaction steps (closed-form effects)")

    def _fit_member(self, names: list[str], mean: np.ndarray, var: np.ndarray,
                    count: np.ndarray, singles: list[str], doubles: list[str],
                    embedding: np.ndarray, member: int,
                    ) -> tuple[np.ndarray, np.ndarray, _Interaction, float]:
        cfg = self.config
        row = {n: i for i, n in enumerate(names)}
        control = row[cfg.control]
        sampling = var / np.maximum(count, 1.0)[:, None] + (var[control] / max(count[control],
                                                                               1.0))[None, :]
        if member == 0:  # fitted to all cells: its sampling variances are the standard errors
            vocab_row = {n: i for i, n in enumerate(self.vocabulary)}
            self.single_se[[vocab_row[n] for n in singles]] = np.sqrt(
                sampling[[row[n] for n in singles]])
            self.double_se[:] = np.sqrt(sampling[[row[n] for n in doubles]]) if doubles else 0
        effect = mean - mean[control]
        s_rows = [row[n] for n in singles]
        cell_weight = count[s_rows] / count[s_rows].sum()
        common = (cell_weight[:, None] * effect[s_rows]).sum(axis=0)
        structure = self._structure(singles, effect[s_rows] - common, embedding)
        if structure is not None:
            structure = structure * self._structure_weight(singles, effect[s_rows] - common,
                                                           embedding)
        vocab_effects = np.empty((len(self.vocabulary), len(self.genes)))
        prior = {}
        for i, name in enumerate(self.vocabulary):
            prior[name] = common + (embedding @ structure @ embedding[self.gene_index[name]]
                                    if name in self.gene_index and structure is not None
                                    else 0.0)
            vocab_effects[i] = prior[name]
        shrunk = self._shrink(effect[s_rows], np.stack([prior[n] for n in singles]),
                              sampling[s_rows])
        for name, value in zip(singles, shrunk, strict=True):
            vocab_effects[self.vocabulary.index(name)] = value
        torch.manual_seed(cfg.seed * 1000 + member)
        net = _Interaction(cfg.interaction_hidden)
        if len(doubles) < cfg.min_doubles:  # too few to learn from: predict additivity
            torch.nn.init.zeros_(net.net[-1].weight)
            torch.nn.init.zeros_(net.net[-1].bias)
        loss = 0.0
        double_effects = np.zeros((len(doubles), len(self.genes)))
        if doubles:
            features = self._pair_features_for(doubles, vocab_effects)
            additive = self._additive(doubles, vocab_effects)
            d_rows = [row[n] for n in doubles]
            target = torch.from_numpy((effect[d_rows] - additive).astype(np.float32))
            if len(doubles) >= cfg.min_doubles:
                loss = self._train_interaction(
                    net, features, target,
                    torch.from_numpy(sampling[d_rows].astype(np.float32)),
                    seed=cfg.seed * 1000 + member)
            with torch.no_grad():
                double_prior = additive + net(features).double().numpy()
            double_effects = self._shrink(effect[d_rows], double_prior, sampling[d_rows])
        return vocab_effects, double_effects, net, loss

    def _structure(self, singles: list[str], specific: np.ndarray,
                   embedding: np.ndarray) -> np.ndarray | None:
        """Ridge map W with specific effect ≈ E W E[target] (the linear baseline's form)."""
        usable = [i for i, n in enumerate(singles) if n in self.gene_index]
        if not usable:
            return None
        k, ridge = embedding.shape[1], self.config.ridge
        targets = embedding[[self.gene_index[singles[i]] for i in usable]]  # [P, k]
        left = np.linalg.solve(embedding.T @ embedding + ridge * np.eye(k),
                               embedding.T @ specific[usable].T)  # [k, P]
        return np.linalg.solve(targets.T @ targets + ridge * np.eye(k), (left @ targets).T).T

    def _structure_weight(self, singles: list[str], specific: np.ndarray,
                          embedding: np.ndarray) -> float:
        """How far to trust the structure for a perturbation it has not seen: the
        least-squares weight in [0, 1] of its leave-one-out predictions of the measured
        specific effects (0 = fall back to the common response)."""
        if not self.config.calibrate_structure:
            return 1.0
        usable = [i for i, n in enumerate(singles) if n in self.gene_index]
        if len(usable) < 3:
            return 0.0
        agreement, power = 0.0, 0.0
        for left_out in usable:
            rest = [i for i in range(len(singles)) if i != left_out]
            structure = self._structure([singles[i] for i in rest], specific[rest], embedding)
            if structure is None:
                continue
            predicted = embedding @ structure @ embedding[self.gene_index[singles[left_out]]]
            agreement += float(predicted @ specific[left_out])
            power += float(predicted @ predicted)
        return float(np.clip(agreement / power, 0.0, 1.0)) if power > 0 else 0.0

    def _shrink(self, observed: np.ndarray, prior: np.ndarray, sampling: np.ndarray) -> np.ndarray:
        """Posterior mean per gene: prior + (observed − prior)·τ²/(τ² + sampling variance),
        with τ² the between-perturbation variance left after the sampling variance."""
        if not self.config.shrink:
            return observed
        residual = observed - prior
        spread = np.maximum((residual**2 - sampling).mean(axis=0), 1e-8)
        return prior + residual * spread / (spread + sampling)

    def _parts(self, name: str) -> list[str]:
        parts = name.split("+")
        unknown = [p for p in parts if p not in self.vocabulary]
        if unknown:
            raise InvalidInputError(
                f"cannot predict {name!r}: {unknown} neither perturbed in training nor a "
                f"measured gene; perturbable: {self.vocabulary[:8]} … ({len(self.vocabulary)})")
        return parts

    def _additive(self, doubles: list[str], vocab_effects: np.ndarray) -> np.ndarray:
        rows = [[self.vocabulary.index(p) for p in d.split("+")] for d in doubles]
        return np.stack([vocab_effects[r].sum(axis=0) for r in rows])

    def _pair_features_for(self, doubles: list[str], vocab_effects: np.ndarray,
                           ) -> tuple[torch.Tensor, torch.Tensor]:
        """Features of each double in both orders (float32)."""
        row = {name: i for i, name in enumerate(self.vocabulary)}
        pairs = [d.split("+") for d in doubles]
        first = vocab_effects[[row[a] for a, _ in pairs]]
        second = vocab_effects[[row[b] for _, b in pairs]]

        def silencing(effects: np.ndarray, targets: list[str]) -> np.ndarray:
            """Each row's effect on its target gene over the target's control level."""
            out = np.zeros(len(targets))
            for i, target in enumerate(targets):
                if target in self.gene_index:
                    gene = self.gene_index[target]
                    out[i] = effects[i, gene] / max(float(self.control_mean[gene]), 0.1)
            return out

        a_on_b = silencing(first, [b for _, b in pairs])
        b_on_a = silencing(second, [a for a, _ in pairs])
        tensors = [torch.from_numpy(v.astype(np.float32)) for v in
                   (first, second, self.control_mean, np.stack([a_on_b, b_on_a], axis=1))]
        forward = _ordered_pair_features(*tensors)
        backward = _ordered_pair_features(tensors[1], tensors[0], tensors[2],
                                          tensors[3].flip(1))
        return forward, backward

    def _train_interaction(self, net: _Interaction,
                           features: tuple[torch.Tensor, torch.Tensor],
                           target: torch.Tensor, sampling: torch.Tensor, seed: int) -> float:
        """Adam on minibatches of (double, gene) rows, squared error weighted by each mean's
        sampling precision, cosine-decayed learning rate; returns the final full loss."""
        cfg = self.config
        generator = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        weight = 1.0 / (sampling + sampling.mean())
        weight = (weight / weight.mean()).reshape(-1)
        rows = (features[0].reshape(-1, PAIR_FEATURES), features[1].reshape(-1, PAIR_FEATURES))
        flat_target = target.reshape(-1)
        optimiser = torch.optim.Adam(net.parameters(), lr=cfg.interaction_lr, weight_decay=1e-4)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, cfg.interaction_steps)
        batch = min(cfg.interaction_batch, flat_target.numel())
        for _ in range(cfg.interaction_steps):
            pick = torch.randint(flat_target.numel(), (batch,), generator=generator)
            optimiser.zero_grad()
            loss = (weight[pick] * (net((rows[0][pick], rows[1][pick])) - flat_target[pick])
                    ** 2).mean()
            loss.backward()
            optimiser.step()
            schedule.step()
        with torch.no_grad():
            return float((weight * (net(rows) - flat_target) ** 2).mean())

    # ---------------------------------------------------------------- prediction
    def effect_members(self, name: str) -> np.ndarray:
        """Each ensemble member's effect of a perturbation, `[M, G]` (log1p scale)."""
        if not self.vocabulary:
            raise InvalidInputError("fit the model first")
        if name == self.config.control:
            return np.zeros((self.config.members, len(self.genes)))
        if name in self.seen_doubles:
            return self.double_effects[:, self.seen_doubles.index(name)]
        parts = self._parts(name)
        rows = [self.vocabulary.index(p) for p in parts]
        total = self.single_effects[:, rows].sum(axis=1)
        for i in range(len(parts)):
            for j in range(i + 1, len(parts)):
                total = total + self._interaction_members(parts[i], parts[j])
        return total

    def double_effect_members(self, doubles: list[str]) -> np.ndarray:
        """Each member's effect of many doubles "A+B" at once, `[M, D, G]`: measured ones
        as fitted, the others as additive + the combination operator, one batched pass
        per member (no loop over doubles)."""
        for name in doubles:
            if len(self._parts(name)) != 2:
                raise InvalidInputError(f"{name!r} is not a double perturbation A+B")
        out = np.empty((self.config.members, len(doubles), len(self.genes)))
        measured = [i for i, name in enumerate(doubles) if name in self.seen_doubles]
        if measured:
            out[:, measured] = self.double_effects[
                :, [self.seen_doubles.index(doubles[i]) for i in measured]]
        fresh = [i for i, name in enumerate(doubles) if name not in self.seen_doubles]
        if fresh:
            names = [doubles[i] for i in fresh]
            for member, net in enumerate(self.interactions):
                singles = self.single_effects[member]
                with torch.no_grad():
                    correction = net(self._pair_features_for(names, singles)).double().numpy()
                out[member, fresh] = self._additive(names, singles) + correction
        return out

    def double_standard_errors(self, doubles: list[str]) -> np.ndarray:
        """Sampling standard errors `[D, G]` of the doubles' measured means (0 if unmeasured)."""
        return np.stack([self.standard_error(name) for name in doubles]) if doubles else \
            np.zeros((0, len(self.genes)))

    def gated_effects(self, members: np.ndarray, standard_error: np.ndarray) -> np.ndarray:
        """Point effects from member stacks `[M, ..., G]`: member 0 where it is at least
        `gate_z` × max(ensemble sd, standard error) from zero, else 0."""
        spread = members[1:].std(axis=0) if len(members) > 1 else np.zeros(members.shape[1:])
        spread = np.maximum(spread, standard_error)
        return np.where(np.abs(members[0]) >= self.config.gate_z * spread, members[0], 0.0)

    def _interaction_members(self, first: str, second: str) -> np.ndarray:
        corrections = []
        for member, net in enumerate(self.interactions):
            features = self._pair_features_for([f"{first}+{second}"],
                                               self.single_effects[member])
            with torch.no_grad():
                corrections.append(net(features)[0].double().numpy())
        return np.stack(corrections)

    def standard_error(self, name: str) -> np.ndarray:
        """Sampling standard error of a measured perturbation's mean effect `[G]` (zero
        for one never measured: its uncertainty is the ensemble's)."""
        if name in self.seen_doubles:
            return self.double_se[self.seen_doubles.index(name)]
        if name in self.trained_labels and name in self.vocabulary:
            return self.single_se[self.vocabulary.index(name)]
        return np.zeros(len(self.genes))

    def effect(self, name: str) -> np.ndarray:
        """Gated point effect `[G]` (member 0, fitted to all cells): genes within `gate_z`
        uncertainties of zero stay put."""
        return self.gated_effects(self.effect_members(name), self.standard_error(name))

    def uncertainty(self, name: str) -> float:
        """Ensemble spread of a perturbation's effect: root mean square sd over genes."""
        return float(np.sqrt((self.effect_members(name).var(axis=0)).mean()))

    def interaction_score(self, name: str) -> float:
        """Largest per-gene deviation of a double's effect from the sum of its singles."""
        parts = self._parts(name)
        additive = self.single_effects[:, [self.vocabulary.index(p) for p in parts]].sum(axis=1)
        return float(np.abs((self.effect_members(name) - additive).mean(axis=0)).max())

    def predict(self, controls: np.ndarray, perturbations: list[str]) -> PerturbationPrediction:
        """Control cells `[N, G]` moved by each perturbation's gated effect (controls kept)."""
        from biowm.models.perturbation import shift_controls

        if controls.ndim != 2 or controls.shape[1] != len(self.genes):
            raise InvalidInputError(f"controls must be [cells, {len(self.genes)} genes], got "
                                    f"{controls.shape}")
        return shift_controls(controls, perturbations, self.effect, self.config.control,
                              count_aware=self.config.count_aware)

    # ---------------------------------------------------------------- WorldModel protocol
    def labels_from_actions(self, actions: torch.Tensor) -> list[str]:
        """Multi-hot actions `[B, A]` over the vocabulary to labels ("A+B", controls)."""
        names = []
        for row in (actions > 0.5).numpy():
            chosen = [self.vocabulary[i] for i in np.flatnonzero(row)]
            names.append("+".join(chosen) if chosen else self.config.control)
        return names

    def fit(self, train: Trajectories, val: Trajectories | None = None,
            **options: Any) -> FitReport:
        """Snapshots as one-step trajectories: `obs [N, 1, G]`, multi-hot `actions [N, 1, A]`
        whose channels name the perturbations."""
        if options:
            raise InvalidInputError(f"unknown options for the perturbation model: "
                                    f"{sorted(options)}")
        if train.obs_space.names != self.genes:
            raise InvalidInputError("training observations must be the model's genes, in order")
        names = train.action_space.names
        hot = (train.actions[:, 0] > 0.5).numpy()
        labels = np.array(["+".join(names[i] for i in np.flatnonzero(row)) or
                           self.config.control for row in hot])
        return self.fit_cells(train.obs[:, 0].numpy(), labels)

    def encode(self, history: Trajectories) -> Belief:
        """The latent basal state is the control cell's own expression at its last time."""
        valid = torch.isfinite(history.times)
        last = valid.sum(dim=1) - 1
        if (last < 0).any():
            raise InvalidInputError("every history needs at least one snapshot")
        if history.obs.shape[-1] != len(self.genes):
            raise InvalidInputError(f"histories must have the model's {len(self.genes)} genes")
        return Belief({"basal": history.obs[torch.arange(len(history)), last].double()})

    def imagine(self, belief: Belief, actions: torch.Tensor, n_samples: int = 0,
                seed: int = 0) -> Forecast:
        """One sample per ensemble member of each cell after its perturbation `actions
        [B, 1, A]`; `extras["mean"]` is the gated ensemble-mean prediction."""
        basal = belief.tensors["basal"]
        names = self.labels_from_actions(actions[:, 0])
        unique, which = np.unique(names, return_inverse=True)  # one effect per perturbation
        members = torch.from_numpy(np.stack([self.effect_members(n) for n in unique],
                                            axis=1)[:, which])
        gated = torch.from_numpy(np.stack([self.effect(n) for n in unique])[which])
        samples = (basal[None] + members).clamp_min(0.0)[:, :, None, :]
        mean = (basal + gated).clamp_min(0.0)[:, None, :]
        return Forecast(samples.float(), torch.ones(len(names), 1), self.obs_space,
                        extras={"mean": mean.float()})

    # ---------------------------------------------------------------- persistence
    def save(self, directory: str | os.PathLike[str], manifest: Manifest | None = None,
             metrics: dict[str, Any] | None = None) -> None:
        if not self.vocabulary:
            raise InvalidInputError("fit the model before saving it")
        config = {"model_class": "perturbation_world", "genes": self.genes,
                  "vocabulary": self.vocabulary, "seen_doubles": self.seen_doubles,
                  "trained_labels": self.trained_labels, "config": asdict(self.config)}
        tensors = {"control_mean": torch.from_numpy(self.control_mean),
                   "single_effects": torch.from_numpy(self.single_effects),
                   "double_effects": torch.from_numpy(self.double_effects),
                   "single_se": torch.from_numpy(self.single_se),
                   "double_se": torch.from_numpy(self.double_se)}
        for member, net in enumerate(self.interactions):
            for key, value in net.state_dict().items():
                tensors[f"interaction.{member}.{key}"] = value
        manifest = manifest or Manifest.create("model", {"model": "perturbation_world"},
                                               seed=self.config.seed)
        card = model_card(
            "biowm perturbation world model", config, manifest,
            context_of_use="Predict single-cell transcriptomes after genetic perturbations "
            "(singles, combinations, unseen perturbations of measured genes) from control "
            "cells of any context; choose which combinations to measure next.",
            validation_domain=f"{len(self.genes)} genes; perturbations seen in training: "
            f"{sum(1 for n in self.trained_labels if n != self.config.control)}; unseen "
            "perturbations only of measured genes.",
            limitations=["Effects are shifts on log1p(counts per 10k); a gene without "
                         "expression in a new context can only rise from zero.",
                         "Effects transfer across contexts unchanged: context-specific "
                         "responses are not modelled.",
                         "Unseen perturbations lean on the expression-derived gene "
                         "embedding; on real data this does worse than the training mean "
                         "(BENCHMARKS.md)."],
            metrics=metrics)
        save_model_dir(directory, config, tensors, manifest, card)

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> PerturbationWorldModel:
        config, tensors, _ = load_model_dir(directory)
        if config.get("model_class") != "perturbation_world":
            raise InvalidInputError(f"{directory}: not a perturbation model "
                                    f"({config.get('model_class')})")
        model = cls(config["genes"], PerturbationWorldConfig(**config["config"]))
        model.vocabulary = list(config["vocabulary"])
        model.seen_doubles = list(config["seen_doubles"])
        model.trained_labels = dict(config["trained_labels"])
        model.control_mean = tensors["control_mean"].numpy()
        model.single_effects = tensors["single_effects"].numpy()
        model.double_effects = tensors["double_effects"].numpy()
        model.single_se = tensors["single_se"].numpy()
        model.double_se = tensors["double_se"].numpy()
        model.interactions = []
        for member in range(model.config.members):
            net = _Interaction(model.config.interaction_hidden)
            prefix = f"interaction.{member}."
            net.load_state_dict({k[len(prefix):]: v for k, v in tensors.items()
                                 if k.startswith(prefix)})
            model.interactions.append(net)
        return model
