"""Mini-batch training with early stopping, one seed, a progress bar and resumable checkpoints.

Generic over networks: the caller gives a module, a loss on a batch of tensors, and the
train/validation tensors. Each epoch's state (weights, optimizer moments, best weights,
patience counter, RNG state) is checkpointed as safetensors + JSON, never pickle, so an
interrupted run resumes where it stopped and finishes with the same result.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from safetensors.torch import load_file, save_file

from biowm.core.errors import InvalidInputError
from biowm.core.io import atomic_path, atomic_write_text
from biowm.core.world_model import FitReport

LossFn = Callable[[Sequence[torch.Tensor]], torch.Tensor]


@dataclass
class TrainConfig:
    """Optimisation settings; `checkpoint_dir` makes the run resumable."""

    max_epochs: int = 40
    batch_size: int = 256
    learning_rate: float = 2e-3
    weight_decay: float = 1e-5
    patience: int = 6
    max_batches_per_epoch: int | None = None
    gradient_clip: float = 5.0
    lr_schedule: str = "constant"  # or "cosine": decays to 0 over max_epochs
    seed: int = 0
    checkpoint_dir: str | None = None
    progress: bool = True
    description: str = "training"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def update(self, options: dict[str, Any]) -> None:
        """Set training options by name; unknown names and schedules are refused."""
        for key, value in options.items():
            if not hasattr(self, key):
                raise InvalidInputError(
                    f"unknown training option {key!r}; options are {sorted(self.to_dict())}"
                )
            setattr(self, key, value)
        _learning_rate(self, 0)  # refuses an unknown lr_schedule now, not after loading data


def _batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    order = torch.randperm(n, generator=generator)
    return list(order.split(batch_size))


@torch.no_grad()
def evaluate_loss(
    module: torch.nn.Module, loss_fn: LossFn, data: Sequence[torch.Tensor], batch_size: int
) -> float:
    module.eval()
    total, count = 0.0, 0
    n = data[0].shape[0]
    for start in range(0, n, batch_size * 4):
        batch = [t[start : start + batch_size * 4] for t in data]
        size = batch[0].shape[0]
        total += float(loss_fn(batch)) * size
        count += size
    return total / max(count, 1)


def train_module(
    module: torch.nn.Module,
    loss_fn: LossFn,
    train: Sequence[torch.Tensor],
    val: Sequence[torch.Tensor],
    config: TrainConfig,
) -> FitReport:
    """Adam with early stopping on the validation loss; leaves the best weights in `module`."""
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.AdamW(
        module.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    state = _TrainingState(best=math.inf, best_epoch=-1, epoch=0, history=[])
    best_weights = {k: v.detach().clone() for k, v in module.state_dict().items()}
    checkpoint = Path(config.checkpoint_dir) if config.checkpoint_dir else None
    if checkpoint is not None and (checkpoint / "checkpoint.json").is_file():
        state, best_weights = _load_checkpoint(checkpoint, module, optimizer, generator)
    stopped = "max_epochs"
    n = train[0].shape[0]
    per_epoch = math.ceil(n / config.batch_size)
    if config.max_batches_per_epoch:
        per_epoch = min(per_epoch, config.max_batches_per_epoch)
    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(),
        TextColumn("epoch {task.fields[epoch]} val {task.fields[val]}"), TimeElapsedColumn(),
        disable=not config.progress, transient=True,
    ) as progress:
        task = progress.add_task(config.description, total=config.max_epochs * per_epoch,
                                 completed=state.epoch * per_epoch, epoch=state.epoch, val="-")
        while state.epoch < config.max_epochs:
            if state.epoch - state.best_epoch > config.patience and state.best_epoch >= 0:
                stopped = "early_stopping"
                break
            module.train()
            for group in optimizer.param_groups:
                group["lr"] = _learning_rate(config, state.epoch)
            running = 0.0
            batches = _batches(n, config.batch_size, generator)[:per_epoch]
            for index in batches:
                loss = loss_fn([t[index] for t in train])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(module.parameters(), config.gradient_clip)
                optimizer.step()
                running += float(loss.detach())
                progress.advance(task)
            val_loss = evaluate_loss(module, loss_fn, val, config.batch_size)
            state.history.append({"epoch": state.epoch, "train_loss": running / len(batches),
                                  "val_loss": val_loss})
            if val_loss < state.best:
                state.best, state.best_epoch = val_loss, state.epoch
                best_weights = {k: v.detach().clone() for k, v in module.state_dict().items()}
            state.epoch += 1
            progress.update(task, epoch=state.epoch, val=f"{val_loss:.4f}")
            if checkpoint is not None:
                _save_checkpoint(checkpoint, module, optimizer, generator, state, best_weights)
        else:
            if state.epoch - state.best_epoch > config.patience:
                stopped = "early_stopping"
    module.load_state_dict(best_weights)
    module.eval()
    return FitReport(epochs=state.epoch, best_val_loss=state.best, stopped_because=stopped,
                     history=state.history)


def _learning_rate(config: TrainConfig, epoch: int) -> float:
    if config.lr_schedule == "constant":
        return config.learning_rate
    if config.lr_schedule == "cosine":
        return config.learning_rate * 0.5 * (1.0 + math.cos(math.pi * epoch / config.max_epochs))
    raise InvalidInputError(
        f"lr_schedule must be 'constant' or 'cosine', got {config.lr_schedule!r}"
    )


@dataclass
class _TrainingState:
    best: float
    best_epoch: int
    epoch: int
    history: list[dict[str, float]]


def _save_checkpoint(
    directory: Path, module: torch.nn.Module, optimizer: torch.optim.Optimizer,
    generator: torch.Generator, state: _TrainingState, best_weights: dict[str, torch.Tensor],
) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.detach().contiguous() for k, v in module.state_dict().items()}
    tensors |= {f"best.{k}": v.contiguous() for k, v in best_weights.items()}
    opt = optimizer.state_dict()
    scalars: dict[str, dict[str, float]] = {}
    for param_id, entries in opt["state"].items():
        for name, value in entries.items():
            if isinstance(value, torch.Tensor) and value.dim() > 0:
                tensors[f"optim.{param_id}.{name}"] = value.contiguous()
            else:
                scalars.setdefault(str(param_id), {})[name] = float(value)
    tensors["rng"] = generator.get_state()
    with atomic_path(directory / "checkpoint.safetensors") as tmp:
        save_file(tensors, str(tmp))
    meta = {"state": asdict(state), "param_groups": opt["param_groups"], "scalars": scalars}
    atomic_write_text(directory / "checkpoint.json", json.dumps(meta))


def _load_checkpoint(
    directory: Path, module: torch.nn.Module, optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
) -> tuple[_TrainingState, dict[str, torch.Tensor]]:
    meta = json.loads((directory / "checkpoint.json").read_text())
    tensors = load_file(str(directory / "checkpoint.safetensors"))
    module.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    best = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")}
    opt_state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, param_id, name = key.split(".", 2)
            opt_state.setdefault(int(param_id), {})[name] = value
    for param_id, entries in meta["scalars"].items():
        for name, value in entries.items():
            opt_state.setdefault(int(param_id), {})[name] = torch.tensor(value)
    optimizer.load_state_dict({"state": opt_state, "param_groups": meta["param_groups"]})
    generator.set_state(tensors["rng"])
    return _TrainingState(**meta["state"]), best
