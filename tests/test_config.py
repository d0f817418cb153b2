"""Config dataclasses: JSON round trips, unknown keys, validation, presets."""

import dataclasses
import json

import pytest

from simgan_histo import config as config_lib


@pytest.mark.parametrize("name", sorted(config_lib.PRESETS))
def test_preset_round_trips_through_json(name):
    config = config_lib.get_preset(name)
    assert config.preset == name
    assert config_lib.Config.from_json(config.to_json()) == config


def test_preset_names_are_the_five_of_the_design():
    assert set(config_lib.PRESETS) == {"paper_2017", "release_2019", "cpu_small", "demo", "tiny"}


def test_unknown_preset_names_the_choices():
    with pytest.raises(ValueError, match="cpu_small"):
        config_lib.get_preset("cpu_big")


def test_defaults_are_the_release():
    assert config_lib.Config() == config_lib.release_2019()
    gan = config_lib.GanTrainConfig()
    assert (gan.gamma, gan.lambda_l1, gan.lambda_l2) == (1e-7, 1e-5, 1e-4)
    assert gan.importance_clip == (0.2, 2.0)
    task = config_lib.TaskConfig()
    assert (task.seg_threshold, task.det_threshold, task.min_area_px) == (0.33, 0.07, 20)


def test_unknown_keys_are_rejected_with_their_path():
    data = json.loads(config_lib.tiny().to_json())
    data["gan"]["lamda_l1"] = 0.5
    with pytest.raises(ValueError, match=r"Config\.gan: unknown key\(s\) \['lamda_l1'\]"):
        config_lib.Config.from_json(json.dumps(data))
    data = json.loads(config_lib.tiny().to_json())
    data["colour"] = 1
    with pytest.raises(ValueError, match="unknown key"):
        config_lib.Config.from_json(json.dumps(data))


def test_tuples_survive_the_round_trip():
    config = config_lib.Config.from_json(config_lib.cpu_small().to_json())
    assert isinstance(config.task.filters, tuple)
    assert isinstance(config.refiner.reference, config_lib.ReferenceBranchConfig)


@pytest.mark.parametrize("factory, kwargs, field", [
    (config_lib.SynthesisConfig, {"patch_size": 0}, "patch_size"),
    (config_lib.SynthesisConfig, {"max_overlap": 1.5}, "max_overlap"),
    (config_lib.SynthesisConfig, {"vertices_range": (18, 10)}, "vertices_range"),
    (config_lib.SynthesisConfig, {"count_source": "labels"}, "count_source"),
    (config_lib.SynthesisConfig, {"layout_source": "labels"}, "layout_source"),
    (config_lib.GanTrainConfig, {"importance_clip": (2.0, 0.2)}, "importance_clip"),
    (config_lib.GanTrainConfig, {"adversarial_loss": "hinge"}, "adversarial_loss"),
    (config_lib.TaskConfig, {"crop_size": 100}, "crop_size"),
    (config_lib.TaskConfig, {"seg_threshold": 2.0}, "seg_threshold"),
    (config_lib.WsiConfig, {"tile_size_px": 200, "overlap_px": 128}, "tile_size_px"),
    (config_lib.WsiConfig, {"stain_norm": "macenko"}, "stain_norm"),
    (config_lib.RuntimeConfig, {"precision": "float16"}, "precision"),
])
def test_validation_names_field_and_value(factory, kwargs, field):
    with pytest.raises(ValueError, match=field):
        factory(**kwargs)


def test_release_discriminator_needs_336_px():
    assert config_lib.DiscriminatorConfig().min_input_size() == 336
    release = config_lib.release_2019()
    with pytest.raises(ValueError, match=">= 336"):
        release.replace(synthesis={"patch_size": 300})
    assert release.replace(synthesis={"patch_size": 336}).synthesis.patch_size == 336


def test_configs_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        config_lib.tiny().task.batch_size = 3


def test_hash_ignores_runtime_but_not_science():
    config = config_lib.tiny()
    assert config.replace(runtime={"precision": "mixed_bfloat16"}).hash() == config.hash()
    assert config.replace(task={"seg_threshold": 0.5}).hash() != config.hash()


def test_load_reads_a_written_file(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(config_lib.demo().to_json())
    assert config_lib.load(str(path)) == config_lib.demo()
