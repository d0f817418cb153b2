"""SavedModel export: TF Serving layout, signature, round trip, inference.json."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from simgan_histo.models import task_net
from simgan_histo.training import export


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from simgan_histo import config as config_lib

    config = config_lib.tiny()
    model = task_net.build_task_net(config.task)
    target = (np.array([70.0, 20.0, -10.0]), np.array([12.0, 6.0, 9.0]))
    settings = export.inference_settings(
        config, target, selection={"validation": "synthetic", "step": 7},
        thresholds={"seg_threshold": 0.45, "det_threshold": 0.15}, mpp=0.5)
    root = tmp_path_factory.mktemp("export") / "model"
    first = export.export_task_model(model, root, config, settings)
    second = export.export_task_model(model, root, config, settings)
    return {"model": model, "root": root, "first": first, "second": second, "config": config}


def test_tf_serving_layout_and_versions(exported):
    root = exported["root"]
    assert exported["first"] == root / "1" and exported["second"] == root / "2"
    for version in ("1", "2"):
        assert (root / version / "saved_model.pb").exists()
        assert (root / version / "variables").is_dir()
        assert (root / version / "assets" / "inference.json").exists()
        assert (root / version / export.KERAS_FILE).exists()
    assert not [p for p in root.iterdir() if p.name.startswith(".tmp")]
    assert export.resolve_export_dir(root) == root / "2"
    assert export.resolve_export_dir(root / "1") == root / "1"


def test_serving_default_equals_the_keras_model(exported):
    function = export.load_serving_function(exported["root"])
    _, inputs = function.structured_input_signature
    assert list(inputs) == ["image"]
    assert inputs["image"].shape.as_list() == [None, None, None, 3]
    assert inputs["image"].dtype == tf.float32
    assert set(function.structured_outputs) == {"segmentation", "detection"}
    image = np.random.default_rng(3).uniform(0, 255, (2, 24, 40, 3)).astype(np.float32)
    served = function(image=tf.constant(image))
    direct = exported["model"](image / 127.5 - 1.0)  # the signature does the scaling
    for key in ("segmentation", "detection"):
        assert served[key].shape == (2, 24, 40, 1) and served[key].dtype == tf.float32
        np.testing.assert_allclose(served[key].numpy(), np.asarray(direct[key]), atol=1e-6)


def test_keras_file_reloads_with_the_same_outputs(exported):
    reloaded = keras.models.load_model(exported["first"] / export.KERAS_FILE)
    image = np.random.default_rng(4).uniform(-1, 1, (1, 16, 16, 3)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(reloaded(image)["logits"]),
                                  np.asarray(exported["model"](image)["logits"]))


def test_inference_json_written_and_read(exported):
    settings = export.load_inference_json(exported["root"])
    assert settings == json.loads((exported["second"] / "assets" / "inference.json").read_text())
    assert settings["mpp"] == 0.5
    assert settings["stride"] == exported["config"].task.stride
    assert settings["stain_norm"] == {"method": "reinhard", "lab_mean": [70.0, 20.0, -10.0],
                                      "lab_std": [12.0, 6.0, 9.0]}
    assert settings["thresholds"]["seg_threshold"] == 0.45
    assert settings["thresholds"]["det_threshold"] == 0.15
    assert settings["thresholds"]["min_area_px"] == exported["config"].task.min_area_px
    assert isinstance(settings["thresholds"]["min_area_px"], int)
    assert settings["thresholds"]["distance_fill_holes"] is False  # a JSON boolean
    assert settings["precision"] == "float32"
    assert settings["config_hash"] == exported["config"].hash()
    assert settings["selection"] == {"validation": "synthetic", "step": 7}
    assert len(settings["git_commit"]) in (40, len("unknown"))


def test_inference_json_thresholds_feed_the_watershed(exported):
    from simgan_histo.postprocess import watershed

    settings = export.load_inference_json(exported["root"])
    thresholds = watershed.Thresholds.from_json(settings["thresholds"])
    assert thresholds.seg_threshold == 0.45 and thresholds.det_threshold == 0.15


def test_missing_export_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no exported model"):
        export.resolve_export_dir(tmp_path)
    (tmp_path / "3").mkdir()
    (tmp_path / "3" / "saved_model.pb").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="inference.json"):
        export.load_inference_json(tmp_path)


def test_bfloat16_copy_serves_close_to_float32(exported):
    copy = export.with_precision(exported["model"], exported["config"].task, "mixed_bfloat16")
    assert copy.get_layer("task_net_enc_0_conv_0").compute_dtype == "bfloat16"
    assert keras.mixed_precision.global_policy().name == "float32"
    image = np.random.default_rng(5).uniform(-1, 1, (1, 32, 32, 3)).astype(np.float32)
    full = np.asarray(exported["model"](image)["segmentation"])
    half = np.asarray(copy(image)["segmentation"])
    assert half.dtype == np.float32
    np.testing.assert_allclose(half, full, atol=0.02)  # bf16 keeps ~3 significant digits
    assert not np.array_equal(half, full)
