"""The hv head (HoVer-Net's distance maps): targets, loss, batches, watershed, train → serve."""

import json

import numpy as np
import pytest
import tensorflow as tf

from simgan_histo import api
from simgan_histo import config as config_lib
from simgan_histo.postprocess import watershed
from simgan_histo.training import hv_target
from simgan_histo.training import task_data
from simgan_histo.training import task_loss
from simgan_histo.training import task_trainer
from simgan_histo.training import task_validation
from simgan_histo.wsi import model as wsi_model
from tests.training import toy_data


def test_hv_maps_by_hand():
    labels = np.zeros((5, 9), np.int32)
    labels[2, 0:5] = 1  # a 1×5 bar: columns −2..2 around its centre, one row
    labels[1:4, 6:9] = 2  # a 3×3 square
    hv = hv_target.hv_maps(labels)
    np.testing.assert_allclose(hv[2, 0:5, 0], [-1, -0.5, 0, 0.5, 1])
    np.testing.assert_allclose(hv[2, 0:5, 1], 0)  # no vertical extent
    np.testing.assert_allclose(hv[1:4, 6:9, 0], [[-1, 0, 1]] * 3)
    np.testing.assert_allclose(hv[1:4, 6:9, 1], [[-1] * 3, [0] * 3, [1] * 3])
    assert np.all(hv[labels == 0] == 0)


def test_boundary_energy_marks_where_touching_nuclei_meet():
    labels = np.zeros((5, 10), np.int32)
    labels[:, :5], labels[:, 5:] = 1, 2  # two 5-px-wide nuclei side by side
    energy = hv_target.boundary_energy(hv_target.hv_maps(labels))
    # Horizontal map per row: [-1, -.5, 0, .5, 1, -1, -.5, 0, .5, 1]; the central slope at
    # columns 4 and 5 is (−1 − .5) / 2 and (−.5 − 1) / 2: a fall of 0.75; inside it rises.
    np.testing.assert_allclose(energy[:, 4], 0.75)
    np.testing.assert_allclose(energy[:, 5], 0.75)
    np.testing.assert_allclose(energy[:, [1, 2, 3, 6, 7, 8]], 0)


def test_hv_loss_by_hand():
    target = np.zeros((1, 8, 8, 2), np.float32)
    ramp = np.zeros((1, 8, 8, 2), np.float32)
    ramp[0, :, :, 0] = 0.1 * np.arange(8)  # slope 0.1 per column
    nucleus = np.zeros((1, 8, 8), np.float32)
    nucleus[0, 4, 4] = 1  # the slope is fitted here only
    roi = tf.ones((8, 8))
    loss = task_loss.hv_per_sample_loss(ramp, target, nucleus, roi, gradient_weight=2.0)
    expected = 8 * np.sum((0.1 * np.arange(8)) ** 2) + 2.0 * 0.1 ** 2
    assert float(loss[0]) == pytest.approx(expected, rel=1e-5)
    assert float(task_loss.hv_per_sample_loss(target, target, nucleus, roi, 2.0)[0]) == 0


def test_augment_moves_extra_planes_with_the_mask():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)
    mask = rng.integers(0, 255, (20, 20), dtype=np.uint8)
    _, moved, extra = task_data.augment(image, mask, 12, np.random.default_rng(5),
                                        mask.astype(np.int32))
    _, alone = task_data.augment(image, mask, 12, np.random.default_rng(5))
    np.testing.assert_array_equal(moved, alone)
    np.testing.assert_array_equal(extra, moved)


@pytest.fixture(scope="module")
def patches(tmp_path_factory):
    return toy_data.write_patch_file(tmp_path_factory.mktemp("patches") / "toy.h5", count=16)


def _config(**task):
    base = dict(batch_size=4, train_steps=4, eval_every=2, summary_every=1, checkpoint_every=2,
                validation_fraction=0.25, seg_threshold_grid=(0.33,), det_threshold_grid=(0.07,),
                compactness_grid=(0.0,), hv_head=True, flood_on_grid=("segmentation", "hv"))
    base.update(task)
    return config_lib.tiny().replace(task=base)


def test_hv_batches_keep_the_other_draws_and_fit_the_turned_labels(patches):
    on, off = _config().task, _config(hv_head=False, flood_on_grid=("segmentation",)).task
    files = task_data.PatchFiles([patches], 0.25, 64, seed=0)
    with_hv = task_data.TaskBatches(on, files, seed=0).batch(7)
    without = task_data.TaskBatches(off, files, seed=0).batch(7)
    assert "hv" not in without
    for key in ("image", "mask", "weight"):
        np.testing.assert_array_equal(with_hv[key], without[key])
    nuclear = (with_hv["mask"] & 1) > 0
    assert with_hv["hv"].shape == with_hv["mask"].shape + (2,)
    assert np.all(with_hv["hv"][~nuclear] == 0) and np.abs(with_hv["hv"]).max() <= 1
    # Inside one nucleus the horizontal map rises along columns and the vertical one along
    # rows, whatever the flip and turn (maps computed before the turn would fall). Two
    # neighbouring nuclear pixels without the contour bit belong to one nucleus.
    inner = nuclear & ((with_hv["mask"] & 2) == 0)
    pairs_h = inner[:, :, 1:] & inner[:, :, :-1]
    pairs_v = inner[:, 1:, :] & inner[:, :-1, :]
    assert pairs_h.sum() > 100 and pairs_v.sum() > 100
    assert np.all(np.diff(with_hv["hv"][..., 0], axis=2)[pairs_h] > 0)
    assert np.all(np.diff(with_hv["hv"][..., 1], axis=1)[pairs_v] > 0)


def test_flooding_hv_cuts_where_the_maps_fall_not_at_the_midline():
    """A flat segmentation map over two touching nuclei (columns 0–12 and 13–19), seeds at
    columns 4 and 16: flooding the segmentation cuts at the midline (column 10), flooding
    with the hv maps cuts at 12 | 13."""
    truth = np.zeros((10, 20), np.int32)
    truth[:, :13], truth[:, 13:] = 1, 2
    segmentation = np.ones((10, 20), np.float32)
    detection = np.zeros((10, 20), np.float32)
    detection[5, 4] = detection[5, 16] = 1.0
    base = watershed.Thresholds(seg_sigma=0, det_sigma=0, compactness=0.0, min_area_px=1)
    hv = hv_target.hv_maps(truth)
    flat = watershed.instances_from_maps(segmentation, detection, base)
    cut = watershed.instances_from_maps(segmentation, detection,
                                        base.replace(flood_on="hv"), hv=hv)
    assert flat[5, 11] == flat[5, 16] != flat[5, 4]  # the midline cut gives column 11 away
    np.testing.assert_array_equal(cut == cut[5, 4], truth == 1)
    with pytest.raises(ValueError, match="hv maps"):
        watershed.instances_from_maps(segmentation, detection, base.replace(flood_on="hv"))


def test_hv_without_the_head_is_refused():
    with pytest.raises(ValueError, match="hv_head"):
        config_lib.tiny().replace(task=dict(flood_on_grid=("hv",)))
    for name in ("hv_weight", "hv_gradient_weight", "min_hematoxylin"):
        with pytest.raises(ValueError, match=f"TaskConfig.{name}=-1"):
            config_lib.tiny().replace(task={name: -1.0})


def test_train_select_export_and_serve_with_the_hv_head(tmp_path, patches):
    config = _config()
    result = task_trainer.train_task(config, tmp_path / "run", [patches])
    curve = [json.loads(line) for line in (tmp_path / "run" / "curve.jsonl").read_text()
             .splitlines()]
    assert all(np.isfinite(r["task/hv"]) and r["task/hv"] > 0 for r in curve)
    records = [json.loads(line) for line in (tmp_path / "run" / "validation.jsonl").read_text()
               .splitlines()]
    assert len(records) == 2
    settings = json.loads((result["export"] / "assets" / "inference.json").read_text())
    assert settings["thresholds"]["flood_on"] in ("segmentation", "hv")
    loaded = api.load(result["export"], thresholds={"flood_on": "hv"})
    image = toy_data.disc_image(64, np.random.default_rng(9))[0]
    served = loaded.serve(image[None].astype(np.float32))
    assert served["hv"].shape == (1, 64, 64, 2)
    # The API floods the served hv maps; the slide path refuses them with a clear error.
    maps = loaded._model_maps(image, None)  # pylint: disable=protected-access
    expected = watershed.instances_from_maps(maps["segmentation"], maps["detection"],
                                             loaded.settings.thresholds, hv=maps["hv"])
    np.testing.assert_array_equal(loaded.predict_labels(image), expected)
    with pytest.raises(ValueError, match="flood_on='hv'"):
        wsi_model.from_api(loaded)


def test_warm_start_from_a_net_without_the_head(tmp_path, patches):
    from simgan_histo.models import task_net  # pylint: disable=import-outside-toplevel
    from simgan_histo.training import gan_export  # pylint: disable=import-outside-toplevel

    config = _config()
    plain = task_net.build_task_net(config_lib.tiny().task)
    weights = gan_export.save_task_weights(plain, tmp_path / "gan" / "task.weights.h5")
    files = task_data.PatchFiles([patches], 0.25, 64, seed=0)
    trainer = task_trainer.TaskTrainer(config, tmp_path / "warm",
                                       task_data.TaskBatches(config.task, files, seed=0),
                                       init_weights=weights)
    trainer.restore_or_initialize()
    for layer in plain.layers:
        for own, given in zip(trainer.model.get_layer(layer.name).weights, layer.weights):
            np.testing.assert_array_equal(np.asarray(own), np.asarray(given))
    assert trainer.model.get_layer("task_net_hv") is not None


def test_validation_loss_counts_the_hv_term(patches):
    config = _config()
    files = task_data.PatchFiles([patches], 0.25, 64, seed=0)
    held = task_trainer._validation_set("synthetic", files)  # pylint: disable=protected-access
    from simgan_histo.models import task_net  # pylint: disable=import-outside-toplevel
    model = task_net.build_task_net(config.task)
    maps = task_validation.predict_maps(model, held.images, config.task.stride)
    without = [{k: v for k, v in m.items() if k != "hv"} for m in maps]
    assert (task_validation.validation_loss(maps, held, config.task)
            > task_validation.validation_loss(without, held, config.task))


@pytest.mark.parametrize("architecture", ["unet", "cnn15"])
def test_both_architectures_serve_full_size_hv_maps(architecture):
    from simgan_histo.models import task_net  # pylint: disable=import-outside-toplevel

    task = _config(architecture=architecture).task
    model = task_net.build_task_net(task)
    out = model(np.zeros((2, 32, 48, 3), np.float32))
    assert out["hv"].shape == (2, 32, 48, 2) and out["logits"].shape == (2, 32, 48, 2)
    plain = task_net.build_task_net(task_net.without_hv_head(task))
    assert "hv" not in plain(np.zeros((1, 32, 32, 3), np.float32))
    assert plain.count_params() < model.count_params()
