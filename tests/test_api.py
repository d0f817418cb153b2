"""The Python API on a real exported SavedModel: load, settings, resampling, tiling, errors.

The model is a tiny Keras net with hand-set weights, so its output is known: segmentation =
sigmoid of the pixel darkness (dark purple = nucleus), detection = darkness averaged over
9×9 then over 4×4 blocks (peaks at nucleus centres; the 4×4 pooling makes the stride 4
real: sides must be multiples of 4). It goes through the project's exporter
(`training/export.py`), i.e. the DESIGN §3 contract, and back through `simgan_histo.load`.
"""

import json

import numpy as np
import pytest

import simgan_histo
from simgan_histo import api, stain
from simgan_histo import config as config_lib
from simgan_histo.evaluation import metrics

BACKGROUND, NUCLEUS = (235, 200, 225), (80, 40, 120)
CENTRES = [(20, 20), (22, 60), (60, 40), (75, 75)]
RADIUS = 8


def _toy_net():
    import keras  # pylint: disable=import-outside-toplevel
    from keras import layers  # pylint: disable=import-outside-toplevel

    image = keras.Input((None, None, 3), name="image")
    # Mean channel in [-1, 1]: background ≈ 0.7, nucleus ≈ -0.37; threshold between.
    seg = layers.Conv2D(1, 1, activation="sigmoid", name="toy_seg")(image)
    core = layers.Conv2D(1, 9, padding="same", activation="sigmoid", name="toy_core")(seg)
    pooled = layers.AveragePooling2D(4, name="toy_pool")(core)
    det = layers.UpSampling2D(4, name="toy_up")(pooled)
    model = keras.Model(image, {"segmentation": seg, "detection": det}, name="toy")
    model.get_layer("toy_seg").set_weights([np.full((1, 1, 3, 1), -10 / 3, np.float32),
                                             np.array([1.5], np.float32)])
    # Fraction of nuclear pixels in the 9×9 window, sharpened around 0.95.
    model.get_layer("toy_core").set_weights([np.full((9, 9, 1, 1), 40 / 81, np.float32),
                                              np.array([-38.0], np.float32)])
    return model


def _settings(**changes):
    settings = {"mpp": 0.25, "stride": 4, "stain_norm": {"method": "none"},
                "thresholds": {"seg_threshold": 0.5, "det_threshold": 0.3, "det_sigma": 1.0,
                               "seg_sigma": 0.5, "min_area_px": 20, "max_area_px": 65536,
                               "compactness": 1.0},
                "precision": "float32", "config_hash": "test", "git_commit": "test"}
    settings.update(changes)
    return settings


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    """<dir>/1 with release-like settings, <dir>/2 with a Reinhard target."""
    from simgan_histo import tf_setup  # pylint: disable=import-outside-toplevel
    tf_setup.import_tensorflow()
    from simgan_histo.training import export  # pylint: disable=import-outside-toplevel

    root = tmp_path_factory.mktemp("export")
    net = _toy_net()
    export.export_task_model(net, root, config_lib.tiny(), _settings())
    target = stain.stats_to_json(stain.lab_stats(_scene()[0]))
    export.export_task_model(net, root, config_lib.tiny(),
                             _settings(stain_norm=dict(method="reinhard", **target)))
    return root


def _scene(shape=(90, 98), scale=1.0):
    """An RGB image with 4 dark disks, and the true instance labels."""
    rgb = np.empty(shape + (3,), np.uint8)
    rgb[:] = BACKGROUND
    labels = np.zeros(shape, np.int32)
    rows, cols = np.ogrid[:shape[0], :shape[1]]
    for index, (r, c) in enumerate(CENTRES):
        disk = (rows - r * scale) ** 2 + (cols - c * scale) ** 2 <= (RADIUS * scale) ** 2
        rgb[disk], labels[disk] = NUCLEUS, index + 1
    return rgb, labels


def test_load_newest_version_and_settings(export_dir):
    newest = simgan_histo.load(export_dir)
    assert newest.name.endswith("/2") and newest.settings.stain_target is not None
    first = simgan_histo.load(export_dir / "1")
    assert first.settings.stain_target is None
    assert first.settings.mpp == 0.25 and first.settings.stride == 4
    assert first.settings.thresholds.det_threshold == 0.3
    assert first.settings.tile_size_px % 4 == 0


def test_predict_instances_finds_the_nuclei(export_dir):
    model = simgan_histo.load(export_dir / "1")
    rgb, truth = _scene()  # 90×98: not a multiple of the stride
    labels, outlines, rows = model.predict_instances(rgb)
    assert labels.shape == truth.shape and labels.dtype == np.uint32
    scores = metrics.image_metrics(truth, labels)
    assert scores["tp"] == 4 and scores["fp"] == 0 and scores["aji"] > 0.85
    assert sorted(outlines) == [1, 2, 3, 4] and list(rows["label"]) == [1, 2, 3, 4]
    centres = sorted(zip(np.round(rows["centroid_y"]), np.round(rows["centroid_x"])))
    np.testing.assert_allclose(centres, sorted(CENTRES), atol=1.0)
    assert np.all(rows["mean_segmentation"] > 0.9)
    assert rows["area_um2"][0] == pytest.approx(rows["area_px"][0] * 0.25 ** 2)


def test_predict_maps_equals_the_keras_net(export_dir):
    model = simgan_histo.load(export_dir / "1")
    rgb, _ = _scene((64, 48))
    segmentation, detection = model.predict_maps(rgb)
    expected = _toy_net()(rgb[None].astype(np.float32) / 127.5 - 1.0)
    np.testing.assert_allclose(segmentation, expected["segmentation"][0, ..., 0], atol=1e-5)
    np.testing.assert_allclose(detection, expected["detection"][0, ..., 0], atol=1e-5)


def test_tiled_prediction_equals_whole_image(export_dir):
    rgb, _ = _scene()
    whole = simgan_histo.load(export_dir / "1").predict_maps(rgb)
    tiled = simgan_histo.load(export_dir / "1", tile_size_px=32, overlap_px=16)
    assert tiled.settings.tile_size_px == 32
    for a, b in zip(whole, tiled.predict_maps(rgb)):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_image_mpp_is_resampled_to_the_model(export_dir):
    model = simgan_histo.load(export_dir / "1")
    rgb, truth = _scene((45, 49), scale=0.5)  # the scene at 0.5 µm/px
    labels, _, rows = model.predict_instances(rgb, mpp=0.5)
    assert labels.shape == (45, 49)
    assert metrics.image_metrics(truth, labels)["tp"] == 4
    assert np.all(np.abs(rows["area_px"] - np.pi * 16) < 12)
    assert rows["area_um2"][0] == pytest.approx(rows["area_px"][0] * 0.25)
    segmentation, _ = model.predict_maps(rgb, mpp=0.5)
    assert segmentation.shape == (45, 49)


def test_reinhard_settings_and_overrides_are_honoured(export_dir):
    rgb, _ = _scene()
    dimmed = (rgb * 0.6).astype(np.uint8)  # darker background: reads as nucleus unnormalised
    plain = simgan_histo.load(export_dir, stain_norm="none")
    normalised = simgan_histo.load(export_dir)
    assert plain.predict_maps(dimmed)[0].mean() > normalised.predict_maps(dimmed)[0].mean() + 0.3
    assert normalised.predict_instances(dimmed).labels.max() == 4
    strict = simgan_histo.load(export_dir / "1", thresholds={"min_area_px": 1000})
    assert strict.predict_instances(rgb).labels.max() == 0


def test_reinhard_source_statistics_ignore_glass(export_dir):
    rgb, _ = _scene()
    normalised = simgan_histo.load(export_dir)
    glass = np.full((rgb.shape[0], 40, 3), 250, np.uint8)
    # The toy segmentation is per pixel, so the tissue's map must not change when glass is
    # added beside it: the source statistics are those of the tissue alone.
    alone = normalised.predict_maps(rgb)[0]
    beside_glass = normalised.predict_maps(np.concatenate([rgb, glass], axis=1))[0]
    np.testing.assert_allclose(beside_glass[:, :rgb.shape[1]], alone, atol=1e-6)
    # An image without tissue is left as it is instead of being stretched onto the target.
    plain = simgan_histo.load(export_dir, stain_norm="none")
    np.testing.assert_array_equal(normalised.predict_maps(glass)[0], plain.predict_maps(glass)[0])


def test_bad_inputs_raise(export_dir, tmp_path):
    model = simgan_histo.load(export_dir / "1")
    rgb, _ = _scene()
    for bad, message in ((rgb[..., 0], "RGB"), (np.dstack([rgb, rgb[..., :1]]), "RGB"),
                         (rgb.astype(np.float32), "uint8")):
        with pytest.raises(ValueError, match=message):
            model.predict_instances(bad)
    with pytest.raises(ValueError, match="mpp"):
        model.predict_maps(rgb, mpp=0.0)
    with pytest.raises(FileNotFoundError):
        simgan_histo.load(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="stain_norm"):
        simgan_histo.load(export_dir / "1", stain_norm="reinhard")  # no target stored
    with pytest.raises(ValueError, match="multiple of the stride"):
        simgan_histo.load(export_dir / "1", tile_size_px=30)


def test_settings_from_json_names_the_problem():
    with pytest.raises(ValueError, match="missing key 'mpp'"):
        api.settings_from_json({"stride": 4}, "x/inference.json")
    with pytest.raises(ValueError, match="unknown key"):
        api.settings_from_json(_settings(thresholds={"seg": 0.5}))
    settings = api.settings_from_json(json.loads(json.dumps(_settings())),
                                      thresholds={"seg_threshold": 0.6})
    assert settings.thresholds.seg_threshold == 0.6 and settings.thresholds.det_threshold == 0.3


def test_windows_partition_the_axis():
    for length, tile, overlap, stride in ((100, 32, 8, 4), (64, 32, 0, 1), (20, 32, 8, 4),
                                          (96, 40, 12, 8), (97, 40, 39, 1)):
        windows = api._windows(length, tile, overlap, stride)  # pylint: disable=protected-access
        assert all(start % stride == 0 for start, _, _ in windows)
        cores = [(a, b) for _, a, b in windows]
        assert cores[0][0] == 0 and cores[-1][1] == length
        assert all(b == c for (_, b), (c, _) in zip(cores, cores[1:]))
        assert all(start <= a and b <= start + min(tile, length) for start, a, b in windows)
