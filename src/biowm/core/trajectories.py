"""Batches of subject trajectories: the data type every model and benchmark exchanges.

Batch-first tensors: `times [B,T]`, `obs [B,T,D]`, `actions [B,T,A]`, `mask [B,T,D]`
(True = observed; clinical data is irregular and missing), `static [B,S]`, plus subject
ids and the three spaces. Subjects of different lengths are padded at the end with
`times = NaN` and `mask = False`. Round-trips to Parquet in long format (one row per
subject-time) with the spaces stored in the schema metadata.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from biowm.core.errors import InvalidInputError
from biowm.core.io import atomic_path
from biowm.core.manifest import Manifest, manifest_path_for
from biowm.core.space import Space

TRAJECTORIES_FORMAT_VERSION = 1
_METADATA_KEY = b"biowm.trajectories"
SUBJECT_COLUMN = "subject_id"
TIME_COLUMN = "time"


@dataclass
class Trajectories:
    """A batch of subjects' observations, actions and static covariates over time."""

    times: torch.Tensor
    obs: torch.Tensor
    actions: torch.Tensor
    mask: torch.Tensor
    static: torch.Tensor
    subject_ids: list[str]
    obs_space: Space
    action_space: Space
    static_space: Space = field(default_factory=Space)
    time_unit: str = "min"

    def __post_init__(self) -> None:
        b, t = self.times.shape
        expected = {
            "obs": (b, t, len(self.obs_space)),
            "actions": (b, t, len(self.action_space)),
            "mask": (b, t, len(self.obs_space)),
            "static": (b, len(self.static_space)),
        }
        for name, shape in expected.items():
            actual = tuple(getattr(self, name).shape)
            if actual != shape:
                raise InvalidInputError(
                    f"Trajectories.{name}: expected shape {shape}, got {actual}"
                )
        if len(self.subject_ids) != b:
            raise InvalidInputError(
                f"Trajectories: {len(self.subject_ids)} subject ids for {b} subjects"
            )
        if self.mask.dtype != torch.bool:
            self.mask = self.mask.bool()

    def __len__(self) -> int:
        return self.times.shape[0]

    @property
    def lengths(self) -> torch.Tensor:
        """Number of valid (non-padding) time points per subject, shape [B]."""
        return torch.isfinite(self.times).sum(dim=1)

    def validate(self) -> None:
        """Check values against the spaces and that times increase within each subject."""
        valid_time = torch.isfinite(self.times)
        self.obs_space.validate(self.obs, "obs", mask=self.mask & valid_time[..., None])
        self.action_space.validate(
            self.actions, "actions", mask=valid_time[..., None].expand_as(self.actions)
        )
        self.static_space.validate(self.static, "static")
        both = valid_time[:, 1:] & valid_time[:, :-1]
        steps = self.times[:, 1:] - self.times[:, :-1]
        if (both & ~(steps > 0)).any():
            subject = int(torch.nonzero(both & ~(steps > 0))[0, 0])
            raise InvalidInputError(
                f"times of subject {self.subject_ids[subject]!r} are not strictly increasing"
            )

    def select(self, index: Sequence[int] | torch.Tensor) -> Trajectories:
        """The sub-batch of subjects at `index`."""
        idx = torch.as_tensor(index, dtype=torch.long)
        return Trajectories(
            times=self.times[idx],
            obs=self.obs[idx],
            actions=self.actions[idx],
            mask=self.mask[idx],
            static=self.static[idx],
            subject_ids=[self.subject_ids[i] for i in idx.tolist()],
            obs_space=self.obs_space,
            action_space=self.action_space,
            static_space=self.static_space,
            time_unit=self.time_unit,
        )

    def schema_metadata(self) -> dict[bytes, bytes]:
        meta = {
            "format_version": TRAJECTORIES_FORMAT_VERSION,
            "time_unit": self.time_unit,
            "obs_space": self.obs_space.to_dict(),
            "action_space": self.action_space.to_dict(),
            "static_space": self.static_space.to_dict(),
        }
        return {_METADATA_KEY: json.dumps(meta).encode()}

    def to_arrow(self) -> pa.Table:
        """Long format: one row per valid subject-time; unobserved values are null."""
        times = self.times.detach().cpu().numpy()
        valid = np.isfinite(times)
        subject_index = np.broadcast_to(np.arange(len(self))[:, None], times.shape)[valid]
        ids = pa.DictionaryArray.from_arrays(
            pa.array(subject_index.astype(np.int32)), pa.array(self.subject_ids, pa.string())
        )
        columns: dict[str, pa.Array] = {SUBJECT_COLUMN: ids, TIME_COLUMN: pa.array(times[valid])}
        obs = self.obs.detach().cpu().numpy()[valid]
        mask = self.mask.detach().cpu().numpy()[valid]
        for j, name in enumerate(self.obs_space.names):
            columns[name] = pa.array(obs[:, j], mask=~mask[:, j])
        actions = self.actions.detach().cpu().numpy()[valid]
        for j, name in enumerate(self.action_space.names):
            columns[name] = pa.array(actions[:, j])
        static = self.static.detach().cpu().numpy()
        for j, name in enumerate(self.static_space.names):
            columns[name] = pa.array(static[subject_index, j])
        table = pa.table(columns)
        return table.replace_schema_metadata(self.schema_metadata())

    def to_parquet(
        self, path: str | os.PathLike[str], manifest: Manifest | None = None
    ) -> Manifest:
        """Write atomically, then the manifest (with the file's hash) beside it."""
        with TrajectoryWriter(path, self, manifest=manifest) as writer:
            writer.write(self)
        return writer.manifest

    @classmethod
    def from_parquet(cls, path: str | os.PathLike[str]) -> Trajectories:
        """Read a file written by `to_parquet`; refuses files without biowm metadata."""
        try:
            table = pq.read_table(path)
        except (OSError, pa.ArrowException) as error:
            raise InvalidInputError(f"{path}: not a readable Parquet file ({error})") from None
        return cls.from_arrow(table, source=str(path))

    @classmethod
    def from_arrow(cls, table: pa.Table, source: str = "table") -> Trajectories:
        raw = (table.schema.metadata or {}).get(_METADATA_KEY)
        if raw is None:
            raise InvalidInputError(f"{source}: no biowm trajectory metadata in the schema")
        meta = json.loads(raw)
        if meta.get("format_version") != TRAJECTORIES_FORMAT_VERSION:
            raise InvalidInputError(
                f"{source}: trajectory format_version {meta.get('format_version')!r} "
                f"is not supported (this biowm reads {TRAJECTORIES_FORMAT_VERSION})"
            )
        obs_space = Space.from_dict(meta["obs_space"])
        action_space = Space.from_dict(meta["action_space"])
        static_space = Space.from_dict(meta["static_space"])
        missing = [
            c
            for c in [SUBJECT_COLUMN, TIME_COLUMN, *obs_space.names, *action_space.names,
                      *static_space.names]
            if c not in table.column_names
        ]
        if missing:
            raise InvalidInputError(f"{source}: missing columns {missing}")

        subject_col = table.column(SUBJECT_COLUMN).combine_chunks()
        if not pa.types.is_dictionary(subject_col.type):
            subject_col = subject_col.dictionary_encode()
        codes = subject_col.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        names = subject_col.dictionary.to_pylist()
        # Subjects keep their order of first appearance in the file.
        first_seen = np.full(len(names), np.iinfo(np.int64).max)
        np.minimum.at(first_seen, codes, np.arange(len(codes)))
        present = np.flatnonzero(first_seen < np.iinfo(np.int64).max)
        present = present[np.argsort(first_seen[present], kind="stable")]
        remap = np.full(len(names), -1)
        remap[present] = np.arange(len(present))
        subject = remap[codes]
        b = len(present)
        order = np.argsort(subject, kind="stable")
        counts = np.bincount(subject, minlength=b)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        position = np.empty(len(subject), dtype=np.int64)
        position[order] = np.arange(len(subject)) - np.repeat(starts, counts)
        t = int(counts.max()) if b else 0

        times = np.full((b, t), np.nan)
        times[subject, position] = table.column(TIME_COLUMN).to_numpy()

        def gather(space: Space) -> tuple[np.ndarray, np.ndarray]:
            values = np.zeros((b, t, len(space)), dtype=np.float32)
            observed = np.zeros((b, t, len(space)), dtype=bool)
            for j, name in enumerate(space.names):
                column = table.column(name).combine_chunks()
                observed[subject, position, j] = column.is_valid().to_numpy(zero_copy_only=False)
                filled = column.fill_null(0.0).to_numpy(zero_copy_only=False)
                values[subject, position, j] = filled
            return values, observed

        obs, mask = gather(obs_space)
        actions, _ = gather(action_space)
        static = np.zeros((b, len(static_space)), dtype=np.float32)
        for j, name in enumerate(static_space.names):
            static[subject, j] = table.column(name).to_numpy()
        return cls(
            times=torch.from_numpy(times),
            obs=torch.from_numpy(obs),
            actions=torch.from_numpy(actions),
            mask=torch.from_numpy(mask),
            static=torch.from_numpy(static),
            subject_ids=[names[i] for i in present],
            obs_space=obs_space,
            action_space=action_space,
            static_space=static_space,
            time_unit=str(meta.get("time_unit", "min")),
        )


class TrajectoryWriter:
    """Stream batches of trajectories into one Parquet file, atomically, with a manifest.

    Lets a data engine write a cohort shard by shard with bounded memory; the file appears
    (and its manifest beside it) only when the `with` block completes without error.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        template: Trajectories,
        manifest: Manifest | None = None,
    ) -> None:
        self.path = Path(path)
        self.manifest = manifest or Manifest.create("trajectories")
        self._schema = template.to_arrow().schema if len(template) else None
        self._template = template
        self._writer: pq.ParquetWriter | None = None
        self._atomic = atomic_path(self.path)
        self._tmp: Path | None = None
        self.n_subjects = 0
        self.n_rows = 0

    def __enter__(self) -> TrajectoryWriter:
        self._tmp = self._atomic.__enter__()
        return self

    def write(self, batch: Trajectories) -> None:
        table = batch.to_arrow()
        if self._writer is None:
            assert self._tmp is not None, "use TrajectoryWriter as a context manager"
            # Dictionary ids differ per batch, so store plain strings in the file.
            self._schema = _plain_schema(table.schema)
            self._writer = pq.ParquetWriter(self._tmp, self._schema, compression="zstd")
        table = table.cast(self._schema)
        self._writer.write_table(table)
        self.n_subjects += len(batch)
        self.n_rows += table.num_rows

    def __exit__(self, exc_type, exc, tb) -> None:  # type: ignore[no-untyped-def]
        if self._writer is None and exc_type is None:
            self.write(self._template.select([]))
        if self._writer is not None:
            self._writer.close()
        if exc_type is None:
            assert self._tmp is not None
            self.manifest.add_file(self._tmp, name=self.path.name)
            self.manifest.config.setdefault("n_subjects", self.n_subjects)
            self.manifest.config.setdefault("n_rows", self.n_rows)
        self._atomic.__exit__(exc_type, exc, tb)
        if exc_type is None:
            self.manifest.write(manifest_path_for(self.path))


def _plain_schema(schema: pa.Schema) -> pa.Schema:
    fields = [
        pa.field(f.name, pa.string()) if pa.types.is_dictionary(f.type) else f for f in schema
    ]
    return pa.schema(fields, metadata=schema.metadata)


def trajectories_sha256(data: Trajectories) -> str:
    """Content hash of the data a model saw (unobserved values do not count)."""
    digest = hashlib.sha256()
    digest.update("\n".join(data.subject_ids).encode())
    obs = torch.where(data.mask, data.obs, torch.zeros_like(data.obs))
    for tensor in (data.times, obs, data.mask, data.actions, data.static):
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
