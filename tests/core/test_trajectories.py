import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from biowm.core.errors import InvalidInputError
from biowm.core.manifest import Manifest, manifest_path_for
from biowm.core.space import Channel, Space
from biowm.core.trajectories import Trajectories, TrajectoryWriter

OBS = Space.of(Channel("cgm_mg_dl", "mg/dL", 39, 600), Channel("lactate_mmol_l", "mmol/L", 0, 30))
ACT = Space.of(Channel("insulin_u_per_min", "U/min", 0, 30))
STATIC = Space.of(Channel("body_weight_kg", "kg", 0, 300))


def make_batch() -> Trajectories:
    times = torch.tensor([[0.0, 5.0, 12.5, 20.0], [0.0, 3.0, float("nan"), float("nan")]],
                         dtype=torch.float64)
    obs = torch.tensor(
        [[[100, 1], [110, 1.5], [120, 0], [130, 2]], [[90, 0.5], [95, 0], [0, 0], [0, 0]]],
        dtype=torch.float32,
    )
    mask = torch.ones(2, 4, 2, dtype=torch.bool)
    mask[0, 2, 1] = False  # irregular: lactate missing at 12.5 min
    mask[1, 1, 1] = False
    mask[1, 2:] = False
    actions = torch.tensor([[[0.01], [0.5], [0.0], [0.02]], [[0.0], [0.1], [0.0], [0.0]]])
    return Trajectories(
        times=times, obs=obs, actions=actions, mask=mask,
        static=torch.tensor([[70.0], [45.5]]), subject_ids=["p-b", "p-a"],
        obs_space=OBS, action_space=ACT, static_space=STATIC,
    )


def test_parquet_round_trip_keeps_everything(tmp_path):
    batch = make_batch()
    batch.validate()
    path = tmp_path / "data.parquet"
    manifest = batch.to_parquet(path, Manifest.create("trajectories", {"note": "test"}, seed=7))
    back = Trajectories.from_parquet(path)
    assert back.subject_ids == ["p-b", "p-a"]  # order of appearance, not alphabetical
    assert back.obs_space == OBS and back.action_space == ACT and back.static_space == STATIC
    assert torch.equal(back.lengths, torch.tensor([4, 2]))
    assert torch.equal(back.mask, batch.mask)
    valid = batch.mask
    assert torch.equal(back.obs[valid], batch.obs[valid])
    assert torch.allclose(back.times[:, :2], batch.times[:, :2])
    assert torch.isnan(back.times[1, 2:]).all()
    assert torch.equal(back.actions[0], batch.actions[0])
    assert torch.equal(back.static, batch.static)
    on_disk = Manifest.read(manifest_path_for(path))
    assert on_disk.seed == 7 and on_disk.config["note"] == "test"
    assert on_disk.config["n_subjects"] == 2 and on_disk.config["n_rows"] == 6
    on_disk.verify(path)
    assert manifest.content_sha256 == on_disk.content_sha256


def test_missing_values_are_null_in_long_format(tmp_path):
    path = tmp_path / "d.parquet"
    make_batch().to_parquet(path)
    table = pq.read_table(path)
    assert table.num_rows == 6
    assert table.column("lactate_mmol_l").null_count == 2
    assert table.column("subject_id").to_pylist()[:1] == ["p-b"]


def test_streamed_shards_equal_one_write(tmp_path):
    batch = make_batch()
    path = tmp_path / "s.parquet"
    with TrajectoryWriter(path, batch) as writer:
        writer.write(batch.select([0]))
        writer.write(batch.select([1]))
    back = Trajectories.from_parquet(path)
    assert back.subject_ids == batch.subject_ids
    assert torch.equal(back.mask, batch.mask)


def test_failed_write_leaves_no_file(tmp_path):
    batch = make_batch()
    path = tmp_path / "x.parquet"
    with pytest.raises(RuntimeError), TrajectoryWriter(path, batch) as writer:
        writer.write(batch)
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_corrupted_file_fails_hash_check(tmp_path):
    path = tmp_path / "d.parquet"
    make_batch().to_parquet(path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(InvalidInputError, match="does not match manifest"):
        Manifest.read(manifest_path_for(path)).verify(path)


def test_foreign_parquet_and_bad_version_are_refused(tmp_path):
    import pyarrow as pa

    plain = tmp_path / "plain.parquet"
    pq.write_table(pa.table({"a": [1, 2]}), plain)
    with pytest.raises(InvalidInputError, match="no biowm trajectory metadata"):
        Trajectories.from_parquet(plain)
    table = make_batch().to_arrow()
    meta = json.loads(table.schema.metadata[b"biowm.trajectories"])
    meta["format_version"] = 99
    future = tmp_path / "future.parquet"
    pq.write_table(table.replace_schema_metadata({b"biowm.trajectories": json.dumps(meta)}),
                   future)
    with pytest.raises(InvalidInputError, match="format_version 99"):
        Trajectories.from_parquet(future)


def test_shape_mismatch_and_bad_values_are_refused():
    batch = make_batch()
    with pytest.raises(InvalidInputError, match="Trajectories.obs"):
        Trajectories(batch.times, batch.obs[:, :, :1], batch.actions, batch.mask, batch.static,
                     batch.subject_ids, OBS, ACT, STATIC)
    bad = make_batch()
    bad.obs[0, 1, 0] = 1000.0
    with pytest.raises(InvalidInputError, match="'cgm_mg_dl' at index \\(0, 1\\)"):
        bad.validate()
    backwards = make_batch()
    backwards.times[0, 2] = 1.0
    with pytest.raises(InvalidInputError, match="not strictly increasing"):
        backwards.validate()


def test_manifest_records_provenance():
    manifest = Manifest.create("model", {"lr": 1e-3}, seed=3)
    assert manifest.package_versions["torch"].startswith("2.13")
    assert "numpy" in manifest.package_versions
    again = Manifest.from_json(manifest.to_json())
    assert again == manifest
    with pytest.raises(InvalidInputError, match="format_version"):
        Manifest.from_json(json.dumps({"kind": "x", "format_version": 0}))
    assert np.isfinite(manifest.config["lr"])
