"""Deep ensemble of latent world models: epistemic uncertainty from member disagreement.

K members are trained from different seeds on the same data (Lakshminarayanan et al.,
2017). The predictive distribution is the equal-weight mixture of the members' Gaussians;
its spread is then calibrated on validation windows as one model. Forecasts carry each
member's mean path (`extras["member_means"]`), which planners use as a disagreement
penalty: where members disagree, the data did not pin the dynamics down.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch

from biowm.core.errors import InvalidInputError
from biowm.core.executor import make_executor
from biowm.core.manifest import Manifest
from biowm.core.model_io import load_model_dir, save_model_dir
from biowm.core.space import Space
from biowm.core.trajectories import Trajectories
from biowm.core.world_model import Belief, FitReport, Forecast
from biowm.models.calibration import error_correlation, spread_scale
from biowm.models.latent import LatentConfig, LatentWorldModel, _card
from biowm.models.noise import correlated_normal
from biowm.models.registry import register_model
from biowm.models.training import TrainConfig
from biowm.models.windows import Windows


def _member_train_config(train: TrainConfig, seed: int, k: int) -> TrainConfig:
    """Each member gets its own seed and, when checkpointing, its own checkpoint folder."""
    folder = None if train.checkpoint_dir is None else f"{train.checkpoint_dir}/member{k}"
    return TrainConfig(**{**train.__dict__, "seed": seed, "checkpoint_dir": folder})


@dataclass
class _MemberJob:
    member: LatentWorldModel
    train: Trajectories
    val: Trajectories
    options: dict[str, Any]


def _fit_member(
    job: _MemberJob,
) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict[str, Any], FitReport]:
    """Train one member (top level, so a worker process can run it)."""
    report = job.member.fit(job.train, job.val, **job.options)
    return job.member.config_dict(), job.member.state_tensors(), job.member.provenance, report


@register_model("ensemble")
class DeepEnsemble:
    def __init__(self, members: int = 5, config: LatentConfig | None = None,
                 train: TrainConfig | None = None, **overrides: Any) -> None:
        if members < 1:
            raise InvalidInputError(f"an ensemble needs >= 1 member, got {members}")
        base = config or LatentConfig(**overrides)
        self.config = base
        self.members = [
            LatentWorldModel(
                LatentConfig(**{**base.__dict__, "seed": base.seed + 1000 * k}),
                _member_train_config(train or TrainConfig(), base.seed + 1000 * k, k),
            )
            for k in range(members)
        ]
        self.scale = torch.ones(base.horizon_steps, 1)
        self.rho = torch.zeros(1)
        self.provenance: dict[str, Any] = {}

    @property
    def obs_space(self) -> Space:
        return self.members[0].obs_space

    @property
    def action_space(self) -> Space:
        return self.members[0].action_space

    @property
    def static_space(self) -> Space:
        return self.members[0].static_space

    @property
    def step(self) -> float:
        return self.members[0].step

    def fit(self, train: Trajectories, val: Trajectories, workers: int = 1,
            **options: Any) -> FitReport:
        """Train the members (in `workers` processes when > 1), then calibrate the mixture."""
        jobs = [
            _MemberJob(member, train, val, {**options, "description":
                                            f"member {k + 1}/{len(self.members)}"})
            for k, member in enumerate(self.members)
        ]
        reports: list[FitReport] = [None] * len(jobs)  # type: ignore[list-item]
        for k, (config, tensors, provenance, report) in make_executor(workers).imap(
            _fit_member, jobs
        ):
            self.members[k] = LatentWorldModel.from_state(config, tensors)
            self.members[k].provenance = provenance
            reports[k] = report
        val_windows = self.members[0].windows(val)
        self.calibrate(val_windows)
        self.provenance = {
            "members": len(self.members),
            "n_train_windows": self.members[0].provenance["n_train_windows"],
            "n_val_windows": len(val_windows),
            "member_best_val_nll": [round(r.best_val_loss, 4) for r in reports],
            "training_data_sha256": self.members[0].provenance["training_data_sha256"],
        }
        return FitReport(
            epochs=sum(r.epochs for r in reports),
            best_val_loss=float(sum(r.best_val_loss for r in reports) / len(reports)),
            stopped_because=", ".join(r.stopped_because for r in reports),
            history=[h for r in reports for h in r.history],
        )

    def encode(self, history: Trajectories) -> Belief:
        tensors: dict[str, torch.Tensor] = {}
        for k, member in enumerate(self.members):
            for name, value in member.encode(history).tensors.items():
                tensors[f"m{k}.{name}"] = value
        return Belief(tensors)

    def _member_belief(self, belief: Belief, k: int) -> Belief:
        prefix = f"m{k}."
        return Belief({n[len(prefix):]: v for n, v in belief.tensors.items()
                       if n.startswith(prefix)})

    def member_moments(self, belief: Belief, actions: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """Each member's mean and sd, `[K, B, H, D]`."""
        moments = [m.moments(self._member_belief(belief, k), actions)
                   for k, m in enumerate(self.members)]
        return torch.stack([m for m, _ in moments]), torch.stack([s for _, s in moments])

    @staticmethod
    def mixture(means: torch.Tensor, sds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = means.mean(dim=0)
        var = (sds**2).mean(dim=0) + means.var(dim=0, unbiased=False)
        return mean, var.sqrt()

    def calibrate(self, val: Windows) -> None:
        means, sds = self.member_moments(self.encode(val.history), val.future_actions)
        mean, sd = self.mixture(means, sds)
        truth = val.future_obs.float()
        self.scale = spread_scale(mean, sd, truth, val.future_mask)
        self.rho = error_correlation(mean, sd * self.scale, truth, val.future_mask)

    @torch.no_grad()
    def imagine(self, belief: Belief, actions: torch.Tensor, n_samples: int = 100,
                seed: int = 0) -> Forecast:
        means, sds = self.member_moments(belief, actions)
        k, b, h, d = means.shape
        mixture_mean = means.mean(dim=0)
        noise = correlated_normal(n_samples, (b, h, d), self.rho,
                                  torch.Generator().manual_seed(seed))
        member = torch.arange(n_samples) % k
        spread = means[member] - mixture_mean[None] + sds[member] * noise
        samples = mixture_mean[None] + self.scale[:h] * spread
        times = self.step * torch.arange(1, h + 1).expand(b, -1).float()
        return Forecast(samples=samples, times=times, space=self.obs_space,
                        extras={"member_means": means, "mean": mixture_mean})

    def config_dict(self) -> dict[str, Any]:
        return {"model_class": "ensemble",
                "members": [m.config_dict() for m in self.members]}

    def save(self, directory: str | os.PathLike[str]) -> None:
        config = self.config_dict()
        tensors = {"calibration.scale": self.scale, "calibration.rho": self.rho}
        for k, member in enumerate(self.members):
            tensors |= {f"member{k}.{n}": v for n, v in member.state_tensors().items()}
        manifest = Manifest.create("model", {"model_class": "ensemble"} | self.provenance,
                                   seed=self.config.seed)
        card_config = {**config["members"][0], "model_class": "ensemble"}
        save_model_dir(directory, config, tensors, manifest,
                       _card(f"Deep ensemble of {len(self.members)} latent world models",
                             card_config, manifest, self))

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> DeepEnsemble:
        config, tensors, manifest = load_model_dir(directory)
        if config.get("model_class") != "ensemble":
            raise InvalidInputError(
                f"{directory}: not an ensemble model ({config.get('model_class')})"
            )
        members = [LatentWorldModel.from_state(c, tensors, prefix=f"member{k}.")
                   for k, c in enumerate(config["members"])]
        model = cls(members=len(members), config=members[0].config)
        model.members = members
        model.scale, model.rho = tensors["calibration.scale"], tensors["calibration.rho"]
        model.provenance = {k: v for k, v in manifest.config.items() if k != "model_class"}
        return model
