"""Task trainer: the loss falls, resume is bit-exact, selection and export, bad inputs."""

import json

import cv2
import h5py
import numpy as np
import pytest

from simgan_histo import config as config_lib
from simgan_histo.training import detection_target
from simgan_histo.training import gan_export
from simgan_histo.training import task_data
from simgan_histo.training import task_trainer
from tests.training import toy_data


def _config(**task):
    base = dict(batch_size=4, train_steps=6, eval_every=3, summary_every=1, checkpoint_every=3,
                validation_fraction=0.25, seg_threshold_grid=(0.33, 0.5),
                det_threshold_grid=(0.07, 0.3))
    base.update(task)
    return config_lib.tiny().replace(task=base)


@pytest.fixture(scope="module")
def patches(tmp_path_factory):
    return toy_data.write_patch_file(tmp_path_factory.mktemp("patches") / "toy.h5", count=16)


def _trainer(config, workdir, patch_path, validation=True):
    files = task_data.PatchFiles([patch_path], config.task.validation_fraction,
                                 config.task.max_validation_patches, seed=0)
    batches = task_data.TaskBatches(config.task, files, seed=0)
    held = task_trainer._validation_set("synthetic", files) if validation else None
    return task_trainer.TaskTrainer(config, workdir, batches, held)


def test_tiny_unet_loss_falls_in_a_few_steps(tmp_path, patches):
    config = _config(train_steps=25, learning_rate=3e-3, eval_every=100, checkpoint_every=100)
    trainer = _trainer(config, tmp_path, patches, validation=False)
    trainer.run(25)
    curve = [json.loads(line) for line in (tmp_path / "curve.jsonl").read_text().splitlines()]
    losses = [record["task/loss"] for record in curve]
    assert len(losses) == 25
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])


def test_cosine_learning_rate_by_hand():
    task = _config(learning_rate=1e-3, train_steps=8, learning_rate_decay="cosine").task
    schedule = task_trainer.learning_rate(task)
    # lr · (1 + cos(π · step / 8)) / 2
    for step, expected in ((0, 1e-3), (2, 1e-3 * (1 + 2 ** -0.5) / 2), (4, 5e-4), (8, 0.0)):
        assert float(schedule(step)) == pytest.approx(expected, abs=1e-9)
    assert task_trainer.learning_rate(_config(learning_rate=2e-3).task) == 2e-3


@pytest.mark.parametrize("decay", ["constant", "cosine"])
def test_resume_is_bit_exact(tmp_path, patches, decay):
    config = _config(learning_rate_decay=decay)
    straight = _trainer(config, tmp_path / "straight", patches)
    straight.run(6)
    interrupted = _trainer(config, tmp_path / "resumed", patches)
    interrupted.run(3)  # checkpoint at step 3, then the process "dies"
    resumed = _trainer(config, tmp_path / "resumed", patches)
    assert resumed.restore_or_initialize() == 3
    resumed.run(6)
    for a, b in zip(straight.checkpoint.task_net.weights, resumed.checkpoint.task_net.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    for a, b in zip(straight.optimizer.variables, resumed.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    curves = [[{k: v for k, v in json.loads(line).items() if not k.endswith("_s")}
               for line in (tmp_path / run / "curve.jsonl").read_text().splitlines()]
              for run in ("straight", "resumed")]
    assert curves[0] == curves[1] and [r["step"] for r in curves[0]] == list(range(1, 7))
    assert (tmp_path / "straight" / "validation.jsonl").read_text() == (
        tmp_path / "resumed" / "validation.jsonl").read_text()
    # The selected settings come back from the checkpoint with every key the grid chose.
    assert resumed.selection() == straight.selection()
    assert set(resumed.selection()["thresholds"]) >= {"seg_threshold", "seed_h", "flood_on"}


def test_a_checkpoint_without_the_selection_is_refused_with_a_clear_error(tmp_path, patches):
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    config = _config()
    old = _trainer(config, tmp_path, patches)
    # What an older trainer wrote: the same network and step, no selected-settings variable.
    written = tf.train.Checkpoint(step=old.step, task_net=old.model,
                                  task_optimizer=old.optimizer, best_score=old.best_score,
                                  best_step=old.best_step)
    tf.train.CheckpointManager(written, tmp_path / "checkpoints", max_to_keep=1).save(0)
    with pytest.raises(RuntimeError, match="delete .*checkpoints to rerun"):
        _trainer(config, tmp_path, patches).restore_or_initialize()


def _weights(model):
    return [np.asarray(v) for v in model.trainable_variables]


def test_moving_average_of_the_weights_by_hand(tmp_path, patches):
    raw = _trainer(_config(), tmp_path / "raw", patches, validation=False)
    trajectory = []
    for steps in (1, 2, 3):  # each run resumes from the previous one's last checkpoint
        raw.run(steps)
        trajectory.append(_weights(raw.model))
    averaged = _trainer(_config(ema_momentum=0.75), tmp_path / "ema", patches, validation=False)
    averaged.run(3)
    # average_1 = w_1; average_k = 0.75·average_(k−1) + 0.25·w_k
    for got, w1, w2, w3 in zip(_weights(averaged.model), *trajectory):
        np.testing.assert_allclose(got, 0.5625 * w1 + 0.1875 * w2 + 0.25 * w3, rtol=1e-5,
                                   atol=1e-7)
    assert not np.allclose(_weights(averaged.model)[0], trajectory[-1][0])


def test_moving_average_is_what_is_validated_and_kept_while_training_goes_on_raw(
        tmp_path, patches):
    for name, momentum in (("plain", 0.0), ("ema", 0.9)):
        _trainer(_config(ema_momentum=momentum, eval_every=6), tmp_path / name, patches).run(6)
    latest = {}
    for name, momentum in (("plain", 0.0), ("ema", 0.9)):
        latest[name] = _trainer(_config(ema_momentum=momentum), tmp_path / name, patches)
        assert latest[name].restore_or_initialize() == 6
    for a, b in zip(_weights(latest["plain"].model), _weights(latest["ema"].model)):
        np.testing.assert_array_equal(a, b)  # the raw trajectory does not feel the average
    with latest["ema"].averaged_weights():
        average = _weights(latest["ema"].model)
    assert not np.allclose(average[0], _weights(latest["ema"].model)[0])  # raw again outside
    kept = latest["ema"]
    kept.best_checkpoint.restore(kept.best_manager.latest_checkpoint).expect_partial()
    for a, b in zip(_weights(kept.model), average):
        np.testing.assert_array_equal(a, b)  # the stopping point's weights are the average
    records = [json.loads(line) for line in
               (tmp_path / "ema" / "validation.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [6]


def test_ema_momentum_out_of_range_is_refused():
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match="ema_momentum"):
            _config(ema_momentum=bad)


def test_warm_start_loads_the_given_weights_and_a_checkpoint_takes_precedence(tmp_path, patches):
    config = _config()
    donor = _trainer(config, tmp_path / "donor", patches, validation=False)
    donor.run(3)
    weights = gan_export.save_task_weights(donor.model, tmp_path / "gan" / "task.weights.h5")
    files = task_data.PatchFiles([patches], 0.25, 64, seed=0)
    batches = task_data.TaskBatches(config.task, files, seed=0)
    fresh = _trainer(config, tmp_path / "fresh", patches, validation=False)
    started = task_trainer.TaskTrainer(config, tmp_path / "warm", batches, init_weights=weights)
    assert started.restore_or_initialize() == 0
    for own, given in zip(started.model.weights, donor.model.weights):
        np.testing.assert_array_equal(np.asarray(own), np.asarray(given))
    assert any(not np.array_equal(np.asarray(a), np.asarray(b))
               for a, b in zip(donor.model.weights, fresh.model.weights))
    started.run(6)  # checkpoints at 3 and 6
    trained = [np.asarray(w).copy() for w in started.model.weights]
    resumed = task_trainer.TaskTrainer(config, tmp_path / "warm", batches, init_weights=weights)
    assert resumed.restore_or_initialize() == 6
    for own, expected in zip(resumed.model.weights, trained):
        np.testing.assert_array_equal(np.asarray(own), expected)


def test_batches_are_a_function_of_seed_and_step(patches):
    config = _config()
    files = task_data.PatchFiles([patches], 0.25, 64, seed=0)
    batches = task_data.TaskBatches(config.task, files, seed=5)
    a, b = batches.batch(11), batches.batch(11)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["image"], batches.batch(12)["image"])
    assert a["image"].shape == (4, 64, 64, 3) and a["mask"].shape == (4, 64, 64)


def test_held_out_patches_are_whole_tiles(patches):
    files = task_data.PatchFiles([patches], 0.25, 64, seed=0)
    with h5py.File(patches) as handle:
        sources = handle["source"][:]
    train, held = set(sources[files.train_rows]), set(sources[files.validation_rows])
    assert len(files.validation_rows) == 4 and not train & held


def test_importance_weights_reach_the_batch_and_can_be_switched_off(tmp_path):
    weights = np.linspace(0.2, 2.0, 8).astype(np.float32)
    path = toy_data.write_patch_file(tmp_path / "weighted.h5", count=8, weights=weights)
    config = _config(validation_fraction=0.0)
    files = task_data.PatchFiles([path], 0.0, 64, seed=0)
    on = task_data.TaskBatches(config.task, files, seed=0).batch(0)["weight"]
    assert set(np.round(on, 4)) <= set(np.round(weights, 4)) and on.std() > 0
    off = task_data.TaskBatches(config.task, files, seed=0, use_importance_weights=False)
    np.testing.assert_array_equal(off.batch(0)["weight"], np.ones(4, np.float32))


def test_real_samples_mix_in_with_weight_one(tmp_path, patches):
    real = task_data.LabeledImages(toy_data.write_labeled_folder(tmp_path / "real"), 64)
    config = _config(real_batch_fraction=0.5)
    files = task_data.PatchFiles([patches], 0.0, 64, seed=0)
    files.weights[:] = 0.5
    batch = task_data.TaskBatches(config.task, files, real, seed=0).batch(3)
    np.testing.assert_array_equal(batch["weight"], [0.5, 0.5, 1.0, 1.0])


def test_train_task_selects_exports_and_records(tmp_path, patches):
    config = _config()
    result = task_trainer.train_task(config, tmp_path / "run", [patches])
    settings = json.loads((result["export"] / "assets" / "inference.json").read_text())
    assert settings["selection"]["validation"] == "synthetic"
    assert settings["selection"]["step"] in (3, 6)
    assert settings["thresholds"]["seg_threshold"] in (0.33, 0.5)
    assert settings["thresholds"]["det_threshold"] in (0.07, 0.3)
    assert settings["stain_norm"]["method"] == "reinhard"
    records = [json.loads(line) for line in
               (tmp_path / "run" / "validation.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [3, 6]
    best = max(records, key=lambda r: r["score"])
    assert settings["selection"]["score"] == pytest.approx(best["score"])
    assert (tmp_path / "run" / "config.json").exists()


def test_missing_patch_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="patch file not found"):
        task_data.PatchFiles([tmp_path / "nope.h5"])


def test_wrong_schema(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as handle:
        handle["image"] = np.zeros((2, 8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="missing datasets"):
        task_data.PatchFiles([path])


def test_synthetic_validation_without_patches_is_refused(tmp_path):
    with pytest.raises(ValueError, match="labeled:<dir>"):
        task_trainer._validation_set("synthetic", None)
    with pytest.raises(ValueError, match="expected 'synthetic'"):
        task_trainer._validation_set("labelled", None)
    with pytest.raises(ValueError, match="'patches:<file>'"):
        task_trainer._validation_set("patches:", None)
    with pytest.raises(FileNotFoundError, match="patch file not found: .*missing.h5"):
        task_trainer._validation_set(f"patches:{tmp_path / 'missing.h5'}", None)


def test_real_dir_errors(tmp_path):
    folder = toy_data.write_labeled_folder(tmp_path / "real", count=2)
    (folder / "labels" / "img1.png").unlink()
    with pytest.raises(FileNotFoundError, match="no label for 1 image"):
        task_data.LabeledImages(folder)
    folder = toy_data.write_labeled_folder(tmp_path / "size", count=1)
    cv2.imwrite(str(folder / "labels" / "img0.png"), np.zeros((50, 96), np.uint16))
    with pytest.raises(ValueError, match="differs from image size"):
        task_data.LabeledImages(folder)
    folder = toy_data.write_labeled_folder(tmp_path / "grey", count=1)
    cv2.imwrite(str(folder / "images" / "img0.png"), np.zeros((96, 96), np.uint8))
    with pytest.raises(ValueError, match="expected an RGB uint8 image"):
        task_data.LabeledImages(folder)
    folder = toy_data.write_labeled_folder(tmp_path / "rgb_labels", count=1)
    cv2.imwrite(str(folder / "labels" / "img0.png"), np.zeros((96, 96, 3), np.uint8))
    with pytest.raises(ValueError, match="single-channel integer instance map"):
        task_data.LabeledImages(folder)
    with pytest.raises(FileNotFoundError, match="labels"):
        task_data.LabeledImages(tmp_path / "absent")
    folder = toy_data.write_labeled_folder(tmp_path / "small", count=1, size=48)
    with pytest.raises(ValueError, match="smaller than the training crop"):
        task_data.LabeledImages(folder, min_size=64)


def test_instances_to_bits_by_hand():
    labels = np.zeros((6, 6), np.uint16)
    labels[1:3, 1:4] = 1  # centroid (1.5, 2) -> (2, 2)
    labels[3:5, 3:5] = 2  # centroid (3.5, 3.5) -> (4, 4) (round half to even)
    bits = task_data.instances_to_bits(labels)
    np.testing.assert_array_equal(bits & 1, labels > 0)
    assert np.argwhere(bits & 4).tolist() == [[2, 2], [4, 4]]
    assert bits[0, 0] & 2 and not bits[0, 5] & 2  # the ring outside nucleus 1 only
    assert bits[2, 3] & 2 and bits[3, 3] & 2  # where nuclei 1 and 2 touch (diagonally)
    assert not bits[1, 2] & 2  # an inner pixel of nucleus 1


def test_labeled_validation_is_named_in_the_export(tmp_path, patches):
    real = toy_data.write_labeled_folder(tmp_path / "real", count=2, size=64)
    config = _config(train_steps=2, eval_every=2)
    result = task_trainer.train_task(config, tmp_path / "run", [patches],
                                     validation=f"labeled:{real}")
    settings = json.loads((result["export"] / "assets" / "inference.json").read_text())
    assert settings["selection"]["validation"] == f"labeled:{real}"
    assert settings["selection"]["step"] == 2


@pytest.mark.slow
def test_mixed_bfloat16_training_uses_xla_and_float32_losses(tmp_path, patches):
    import keras

    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        trainer = _trainer(_config(train_steps=3), tmp_path, patches, validation=False)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert trainer.jit_compile
    trainer.run(3)
    curve = [json.loads(line) for line in (tmp_path / "curve.jsonl").read_text().splitlines()]
    assert len(curve) == 3 and all(np.isfinite(r["task/loss"]) for r in curve)
    assert trainer.model.get_layer("task_net_enc_0_conv_0").compute_dtype == "bfloat16"


def _grid_search_one(truth, segmentation, detection, **grids):
    """`grid_search` over one image's maps: seg 0.5, det 0.07, detection seeds and no merge
    unless given."""
    from simgan_histo.training import task_validation  # pylint: disable=import-outside-toplevel
    task = _config(**{"seg_threshold_grid": (0.5,), "det_threshold_grid": (0.07,),
                      "det_sigma_grid": (1.0,), "merge_solidity_grid": (0.0,),
                      "seed_h_grid": (0.0,), **grids}).task
    validation = task_validation.ValidationSet("synthetic", [None], [None], [truth])
    return task_validation.grid_search(
        [{"segmentation": segmentation, "detection": detection}], validation, task)


def test_selection_grid_picks_the_detection_smoothing_that_joins_two_peaks():
    """One elongated nucleus whose detection map has two peaks 8 px apart: σ = 1 seeds it
    twice (a split), σ = 3 merges the peaks into one seed; the grid must choose σ = 3."""
    truth = np.zeros((64, 64), np.uint16)
    cv2.ellipse(truth, (32, 32), (14, 7), 0, 0, 360, 1, -1)
    segmentation = (truth > 0).astype(np.float32)
    detection = np.zeros((64, 64), np.float32)
    detection[32, 28] = detection[32, 36] = 1.0
    detection = cv2.GaussianBlur(detection, (0, 0), 1.0)
    detection /= detection.max()
    result = _grid_search_one(truth, segmentation, detection, det_sigma_grid=(1.0, 3.0))
    by_sigma = {row[2]: row[4] for row in result["grid"]}
    assert result["thresholds"] == {"seg_threshold": 0.5, "det_threshold": 0.07,
                                    "det_sigma": 3.0, "min_area_px": 20, "compactness": 1.0,
                                    "flood_on": "segmentation", "min_hematoxylin": 0.0,
                                    "merge_solidity": 0.0, "seed_h": 0.0}
    assert by_sigma[3.0] == pytest.approx(1.0) and by_sigma[1.0] < 0.7


def test_selection_grid_picks_distance_seeds_that_keep_a_nucleus_whole():
    """The same nucleus with its detection peaks 16 px apart: detection seeds split it, the
    distance transform's single maximum does not; the grid must choose h 1."""
    truth = np.zeros((64, 64), np.uint16)
    cv2.ellipse(truth, (32, 32), (18, 7), 0, 0, 360, 1, -1)
    segmentation = (truth > 0).astype(np.float32)
    detection = np.zeros((64, 64), np.float32)
    detection[32, 24] = detection[32, 40] = 1.0
    result = _grid_search_one(truth, segmentation, detection, seed_h_grid=(0.0, 1.0),
                              det_threshold_grid=(0.03, 0.07))
    by_h = {}
    for row in result["grid"]:
        by_h.setdefault(row[10], []).append(row[4])
    assert result["thresholds"]["seed_h"] == 1.0
    assert by_h[1.0] == [pytest.approx(1.0)]  # one row: det is not read by distance seeds
    assert len(by_h[0.0]) == 2 and max(by_h[0.0]) < 0.7


def test_selection_grid_picks_the_convex_merge_that_rejoins_a_split_nucleus():
    """The same nucleus with its peaks 16 px apart, too far for σ = 1 to join: the
    watershed splits it, and merging touching instances whose union has solidity >= 0.9
    rejoins it; the grid must choose that merge."""
    truth = np.zeros((64, 64), np.uint16)
    cv2.ellipse(truth, (32, 32), (18, 7), 0, 0, 360, 1, -1)
    segmentation = (truth > 0).astype(np.float32)
    detection = np.zeros((64, 64), np.float32)
    detection[32, 24] = detection[32, 40] = 1.0
    result = _grid_search_one(truth, segmentation, detection, merge_solidity_grid=(0.0, 0.9))
    by_merge = {row[9]: row[4] for row in result["grid"]}
    assert result["thresholds"]["merge_solidity"] == 0.9
    assert by_merge[0.9] == pytest.approx(1.0) and by_merge[0.0] < 0.7


def test_selection_grid_picks_the_compactness_that_cuts_along_the_valley():
    """A large and a small nucleus touching, with a probability valley on their border.
    Compactness 1 cuts them along the seeds' bisector, 10 px from each centre, i.e. 4 px
    inside the large one; compactness 0 follows the valley. The grid must choose 0."""
    truth = np.zeros((64, 80), np.uint16)
    cv2.circle(truth, (24, 32), 14, 1, -1)
    cv2.circle(truth, (44, 32), 6, 2, -1)  # centres 20 px apart: the discs touch
    border = (cv2.dilate(truth, np.ones((3, 3), np.uint8)) != truth) & (truth > 0)
    segmentation = np.where(truth > 0, 1.0, 0.0).astype(np.float32)
    segmentation[border & (cv2.dilate((truth == 2).astype(np.uint8), np.ones((3, 3))) > 0)
                 & (cv2.dilate((truth == 1).astype(np.uint8), np.ones((3, 3))) > 0)] = 0.7
    detection = np.zeros((64, 80), np.float32)
    detection[32, 24] = detection[32, 44] = 1.0
    result = _grid_search_one(truth, segmentation, detection, compactness_grid=(1.0, 0.0))
    by_compactness = {row[6]: row[4] for row in result["grid"]}
    assert result["thresholds"]["compactness"] == 0.0
    assert by_compactness[0.0] > 0.97 and by_compactness[1.0] < by_compactness[0.0] - 0.03


def test_selection_grid_picks_the_flooded_map_with_the_valley():
    """A nucleus of radius 5 overlapping one of radius 16, a flat segmentation map (no
    valley) and their inner-distance map as detection: flooding −segmentation cuts at equal
    distance from the seeds, 3.5 px inside the large one; flooding −detection follows the
    distance valley. The grid must choose "detection"."""
    truth = np.zeros((64, 80), np.uint16)
    cv2.circle(truth, (20, 32), 16, 1, -1)
    cv2.circle(truth, (37, 32), 5, 2, -1)
    segmentation = (truth > 0).astype(np.float32)
    detection = detection_target.distance_levels(truth) / detection_target.DISTANCE_LEVELS
    result = _grid_search_one(truth, segmentation, detection.astype(np.float32),
                              det_threshold_grid=(0.6,), compactness_grid=(0.0,),
                              flood_on_grid=("segmentation", "detection"))
    by_map = {row[7]: row[4] for row in result["grid"]}
    assert result["thresholds"]["flood_on"] == "detection"
    assert by_map["detection"] > 0.95 and by_map["segmentation"] < by_map["detection"] - 0.1


def test_selection_grid_picks_the_min_area_that_drops_a_small_false_object():
    """A true nucleus of 1,257 px plus a predicted 7×7 speck where there is none: AJI is
    1257/1257 with min area 60 and 1257/(1257 + 49) with 20 (the speck joins the union)."""
    truth = np.zeros((64, 64), np.uint16)
    cv2.circle(truth, (24, 24), 20, 1, -1)
    segmentation = (truth > 0).astype(np.float32)
    segmentation[52:59, 52:59] = 1.0
    detection = np.zeros((64, 64), np.float32)
    detection[24, 24] = detection[55, 55] = 1.0
    result = _grid_search_one(truth, segmentation, detection, min_area_grid=(60, 20))
    by_area = {row[3]: row[4] for row in result["grid"]}
    area = int((truth > 0).sum())
    assert by_area[60] == pytest.approx(1.0)
    assert by_area[20] == pytest.approx(area / (area + 49))
    assert result["thresholds"]["min_area_px"] == 60
