"""Versioned model directories: round trip, atomic replacement, and every refusal."""

import json

import pytest
import torch

from biowm.core.errors import InvalidInputError
from biowm.core.manifest import Manifest
from biowm.core.model_io import (
    CARD,
    CONFIG,
    MANIFEST,
    MODEL_FORMAT_VERSION,
    WEIGHTS,
    load_model_dir,
    save_model_dir,
)

TENSORS = {"weights": torch.arange(12, dtype=torch.float64).reshape(3, 4), "bias": torch.ones(4)}


def save(directory, config=None, tensors=None, seed=7):
    config = config or {"model_class": "toy", "width": 4}
    save_model_dir(directory, config, tensors or TENSORS, Manifest.create("model", config, seed),
                   "# Model card: toy\n")


def rewrite(path, data: bytes) -> None:
    path.chmod(0o644)
    path.write_bytes(data)


def test_round_trip_keeps_config_tensors_and_provenance(tmp_path):
    save(tmp_path / "m")
    config, tensors, manifest = load_model_dir(tmp_path / "m")
    assert config == {"format_version": MODEL_FORMAT_VERSION, "model_class": "toy", "width": 4}
    assert tensors.keys() == TENSORS.keys()
    for name, value in TENSORS.items():
        assert torch.equal(tensors[name], value) and tensors[name].dtype == value.dtype
    assert manifest.kind == "model" and manifest.seed == 7
    assert set(manifest.content_sha256) == {CONFIG, WEIGHTS}
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == sorted(
        [CONFIG, WEIGHTS, MANIFEST, CARD]
    )


def test_saving_over_a_model_replaces_it_and_leaves_no_temporaries(tmp_path):
    save(tmp_path / "m")
    save(tmp_path / "m", config={"model_class": "toy", "width": 5},
         tensors={"weights": torch.zeros(2)})
    config, tensors, _ = load_model_dir(tmp_path / "m")
    assert config["width"] == 5 and list(tensors) == ["weights"]
    assert [p.name for p in tmp_path.iterdir()] == ["m"]


def test_a_failed_save_leaves_the_old_model_intact(tmp_path):
    save(tmp_path / "m")
    with pytest.raises(TypeError):
        save(tmp_path / "m", config={"model_class": "toy", "bad": object()})
    config, _, _ = load_model_dir(tmp_path / "m")
    assert config["width"] == 4
    assert [p.name for p in tmp_path.iterdir()] == ["m"]


def test_corrupted_weights_are_refused_by_hash(tmp_path):
    save(tmp_path / "m")
    weights = tmp_path / "m" / WEIGHTS
    raw = bytearray(weights.read_bytes())
    raw[-4:] = bytes(b ^ 0xFF for b in raw[-4:])
    rewrite(weights, bytes(raw))
    with pytest.raises(InvalidInputError, match="weights.safetensors: content hash .*corrupted"):
        load_model_dir(tmp_path / "m")


def test_weights_that_match_the_manifest_but_are_not_safetensors_are_refused(tmp_path):
    save(tmp_path / "m")
    weights = tmp_path / "m" / WEIGHTS
    rewrite(weights, b"not safetensors at all")
    manifest = Manifest.read(tmp_path / "m" / MANIFEST)
    manifest.add_file(weights)
    manifest.write(tmp_path / "m" / MANIFEST)
    with pytest.raises(InvalidInputError, match="corrupted weights"):
        load_model_dir(tmp_path / "m")


def test_an_edited_config_is_refused_by_hash(tmp_path):
    save(tmp_path / "m")
    path = tmp_path / "m" / CONFIG
    config = json.loads(path.read_text())
    config["width"] = 400
    rewrite(path, json.dumps(config).encode())
    with pytest.raises(InvalidInputError, match="config.json: content hash .*changed"):
        load_model_dir(tmp_path / "m")


def test_an_unknown_format_version_is_named(tmp_path):
    save(tmp_path / "m")
    path = tmp_path / "m" / CONFIG
    config = json.loads(path.read_text())
    config["format_version"] = 99
    rewrite(path, json.dumps(config).encode())
    with pytest.raises(InvalidInputError, match="format version 99 is not supported .* reads "
                       f"version {MODEL_FORMAT_VERSION}"):
        load_model_dir(tmp_path / "m")


def test_missing_directory_missing_file_and_bad_json_are_refused(tmp_path):
    with pytest.raises(InvalidInputError, match="does not exist"):
        load_model_dir(tmp_path / "nowhere")
    save(tmp_path / "m")
    (tmp_path / "m" / MANIFEST).unlink()
    with pytest.raises(InvalidInputError, match="missing manifest.json"):
        load_model_dir(tmp_path / "m")
    save(tmp_path / "j")
    rewrite(tmp_path / "j" / CONFIG, b"{not json")
    with pytest.raises(InvalidInputError, match="not valid JSON"):
        load_model_dir(tmp_path / "j")
