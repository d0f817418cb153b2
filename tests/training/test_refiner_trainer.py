"""The GAN trainer end to end at the `tiny` preset: outputs, exact resume, devices, NaNs, bf16.

The three subprocess runs (straight; killed with SIGKILL then resumed; MirroredStrategy)
start together in one module fixture, so their TensorFlow start-ups and tracing overlap.
"""

import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow

ITERATIONS = 7  # tiny: every phase of the schedule, one checkpoint per iteration
KILL_AFTER = 4  # checkpoint to wait for before SIGKILL


@pytest.fixture(scope="module")
def tissue(monuseg):
    return str(monuseg / "train" / "images" / "TCGA-18-5592-01Z-00-DX1.png")


def _start(workdir, tissue, *extra):
    command = [sys.executable, "-m", "tests.training.refiner_worker", str(workdir), tissue,
               str(ITERATIONS), *extra]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONHASHSEED="0")
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _finish(process) -> dict:
    out, err = process.communicate(timeout=900)
    assert process.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def _latest_named(state: pathlib.Path) -> int:
    """The checkpoint number the manager's state file names (-1 before the first)."""
    found = re.search(r'^model_checkpoint_path: "ckpt-(\d+)"', state.read_text(), re.M) \
        if state.exists() else None
    return int(found.group(1)) if found else -1


def _kill_after_checkpoint(process, workdir: pathlib.Path, number: int) -> None:
    deadline = time.time() + 600
    # Wait for the state file to name the checkpoint (it is written after ckpt-N.index), so
    # the resumed run starts from N; a kill between the two would resume from N - 1.
    state = workdir / "checkpoints" / "checkpoint"
    while _latest_named(state) < number:
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.time() < deadline
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert process.returncode == -signal.SIGKILL
    assert not (workdir / "checkpoints" / f"ckpt-{ITERATIONS}.index").exists()


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tissue):
    root = tmp_path_factory.mktemp("refiner_runs")
    dirs = {name: root / name for name in ("straight", "resumed", "mirrored")}
    straight = _start(dirs["straight"], tissue)
    killed = _start(dirs["resumed"], tissue)
    mirrored = _start(dirs["mirrored"], tissue, "--mirrored")
    _kill_after_checkpoint(killed, dirs["resumed"], KILL_AFTER)
    resumed = _start(dirs["resumed"], tissue)
    summaries = {"straight": _finish(straight), "resumed": _finish(resumed),
                 "mirrored": _finish(mirrored)}
    return dirs, summaries


def _buffer_rows(workdir):
    from simgan_histo import buffer as buffer_lib
    with buffer_lib.HistoryBuffer.open(pathlib.Path(workdir) / "history.h5") as buffer:
        return buffer.read(np.arange(len(buffer)))


def _checkpoint(workdir, number=ITERATIONS) -> dict:
    import tensorflow as tf
    reader = tf.train.load_checkpoint(str(pathlib.Path(workdir) / "checkpoints" /
                                          f"ckpt-{number}"))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if not name.startswith("_CHECKPOINTABLE_OBJECT_GRAPH")}


def _scalars(workdir) -> dict:
    """{tag: {step: value}} of the run's TensorBoard events."""
    import tensorflow as tf
    from tensorboard.backend.event_processing import event_accumulator
    events = str(next((pathlib.Path(workdir) / "tensorboard" / "refiner").glob("events.*")))
    accumulator = event_accumulator.EventAccumulator(events, size_guidance={"tensors": 0})
    accumulator.Reload()
    return {tag: {event.step: tf.make_ndarray(event.tensor_proto)
                  for event in accumulator.Tensors(tag)}
            for tag in accumulator.Tags()["tensors"]}


def test_full_tiny_run_writes_every_output(runs):
    dirs, summaries = runs
    workdir = dirs["straight"]
    assert json.loads((workdir / "config.json").read_text())["preset"] == "tiny"
    assert (workdir / "checkpoints" / f"ckpt-{ITERATIONS}.index").exists()
    for name in ("refiner", "discriminator"):
        assert (workdir / "export" / name / "1" / "saved_model.pb").exists()
    rows = _buffer_rows(workdir)
    assert len(rows["image"]) > 0 and rows["image"].dtype == np.uint8
    assert (rows["step"] >= 0).all()
    assert summaries["straight"]["iterations"] == ITERATIONS
    assert summaries["straight"]["phase"] == "task_final"
    # Every synthetic batch was prefetched one iteration ahead (the plan matched the use).
    assert summaries["straight"]["inputs"]["on_the_spot"] == 0
    assert summaries["straight"]["inputs"]["prefetched"] > 0
    assert json.loads((workdir / "refiner_summary.json").read_text()) == summaries["straight"]


def test_tensorboard_has_the_named_summaries(runs):
    from tensorboard.backend.event_processing import event_accumulator
    dirs, _ = runs
    scalars = _scalars(dirs["straight"])
    for tag in ("refiner/reg", "refiner/adv", "refiner/hard", "discriminator/loss",
                "discriminator/accuracy_real", "discriminator/accuracy_fake", "task/loss",
                "weights/mean", "weights/at_low", "weights/at_high", "time/iteration_s",
                "weights/importance", "patches/initial_refined_reference", "schedule/phase"):
        assert tag in scalars, sorted(scalars)
    assert sorted(scalars["refiner/reg"]) == [1, 3, 5, 6]  # iterations with refiner updates
    assert sorted(scalars["task/loss"]) == [4, 5, 6, 7]
    events = str(next((dirs["straight"] / "tensorboard" / "refiner").glob("events.*")))
    accumulator = event_accumulator.EventAccumulator(events, size_guidance={"tensors": 0})
    accumulator.Reload()
    grid = accumulator.Tensors("patches/initial_refined_reference")[-1]
    width, height = (int(v) for v in grid.tensor_proto.string_val[:2])
    assert (width, height) == (3 * 64, 64)  # initial | refined | reference


def test_saved_models_answer_their_signatures(runs):
    import tensorflow as tf
    dirs, _ = runs
    image = tf.random.uniform([1, 64, 64, 3], 0, 255)
    refiner = tf.saved_model.load(str(dirs["straight"] / "export" / "refiner" / "1"))
    refined = refiner.signatures["serving_default"](image=image, reference=image)["refined"]
    assert refined.shape == (1, 64, 64, 3)
    assert 0.0 <= float(tf.reduce_min(refined)) and float(tf.reduce_max(refined)) <= 255.0
    discriminator = tf.saved_model.load(str(dirs["straight"] / "export" / "discriminator" / "1"))
    logits = discriminator.signatures["serving_default"](image=image, reference=image)["logits"]
    assert logits.shape[0] == 1 and logits.shape[-1] == 1


def test_resume_after_kill_is_bit_exact(runs):
    dirs, summaries = runs
    assert summaries["resumed"]["resumed_from"] >= KILL_AFTER
    straight, again = _checkpoint(dirs["straight"]), _checkpoint(dirs["resumed"])
    assert sorted(straight) == sorted(again)
    assert any("optimizer" in name for name in straight)  # optimiser state is compared too
    for name in straight:
        np.testing.assert_array_equal(straight[name], again[name], err_msg=name)
    rows_a, rows_b = _buffer_rows(dirs["straight"]), _buffer_rows(dirs["resumed"])
    for key in rows_a:
        np.testing.assert_array_equal(rows_a[key], rows_b[key], err_msg=key)


def test_mirrored_strategy_matches_one_device(runs):
    dirs, summaries = runs
    assert summaries["mirrored"]["iterations"] == ITERATIONS
    weights = _checkpoint(dirs["mirrored"])
    assert sorted(weights) == sorted(_checkpoint(dirs["straight"]))
    assert all(np.isfinite(v).all() for v in weights.values() if v.dtype.kind == "f")
    # Same initial weights and batches: before the optimisers' rounding differences grow,
    # the losses (reduced with the global batch over 2 replicas) equal the 1-device ones.
    one, two = _scalars(dirs["straight"]), _scalars(dirs["mirrored"])
    for tag, step in (("refiner/reg", 1), ("refiner/loss", 1), ("discriminator/loss", 2)):
        np.testing.assert_allclose(two[tag][step], one[tag][step], rtol=1e-3, err_msg=tag)


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(workdir, tissue, tiny_config):
    from simgan_histo import synthesis
    from simgan_histo.training import refiner_run, refiner_trainer

    source = synthesis.TissueSource.from_paths(tissue, tiny_config.synthesis, mpp=0.25)
    refiner_run.train_refiner(tiny_config, workdir, source, num_iterations=2, export=False)
    # An overflowing regulariser makes the refiner's loss infinite at its next update
    # (iteration 2, the adversarial phase: iteration 1 only trained D).
    poisoned = tiny_config.replace(gan={"alpha": 1e38, "lambda_l1": 1e38})
    with pytest.raises(refiner_trainer.NonFiniteLossError, match="iteration 2"):
        refiner_run.train_refiner(poisoned, workdir, source, export=False)
    checkpoints = sorted(p.name for p in (workdir / "checkpoints").glob("ckpt-*.index"))
    assert checkpoints == ["ckpt-1.index", "ckpt-2.index"]
    assert not (workdir / "export").exists()  # no exports of a failed run
    assert json.loads((workdir / "refiner_summary.json").read_text())["iterations"] == 2
    for name, value in _checkpoint(workdir, 2).items():
        if isinstance(value, np.ndarray) and value.dtype.kind == "f":
            assert np.isfinite(value).all(), name


def test_mixed_bfloat16_keeps_weights_and_losses_float32(workdir, tissue, tiny_config):
    import keras
    from simgan_histo import synthesis
    from simgan_histo.training import refiner_run

    config = tiny_config.replace(runtime={"precision": "mixed_bfloat16"})
    source = synthesis.TissueSource.from_paths(tissue, config.synthesis, mpp=0.25)
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:  # three iterations: refiner warm-up, D warm-up, adversarial
        summary = refiner_run.train_refiner(config, workdir, source, num_iterations=3,
                                            export=False)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert summary["iterations"] == 3 and summary["precision"] == "mixed_bfloat16"
    variables = _checkpoint(workdir, 3)
    floats = {name: v for name, v in variables.items() if v.dtype.kind == "f"}
    assert floats and all(v.dtype == np.float32 for v in floats.values())
    losses = _scalars(workdir)
    for tag, step in (("refiner/reg", 1), ("discriminator/loss", 2), ("refiner/adv", 3)):
        value = losses[tag][step]
        assert value.dtype == np.float32 and np.isfinite(value), tag


def test_trainer_task_net_is_the_unet(tiny_config, workdir):
    from simgan_histo.models import unet
    from simgan_histo.training import refiner_trainer
    trainer = refiner_trainer.RefinerTrainer(tiny_config, workdir)
    reference = unet.build_unet(tiny_config.task)
    assert [layer.name for layer in trainer.task_net.layers] == \
        [layer.name for layer in reference.layers]
    assert trainer.task_net.count_params() == reference.count_params()


def test_core_detection_target_reaches_the_gan_task_net(tmp_path, tissue, tiny_config,
                                                        monkeypatch):
    """The joint phase trains the GAN's task net on the cores when asked: its masks carry
    bit 8 inside the nuclei, and the same batches give another, finite task loss."""
    from simgan_histo import synthesis
    from simgan_histo.training import refiner_run, refiner_trainer

    seen = []
    original = refiner_trainer.RefinerTrainer.task_step

    def spy(self, image, reference, mask, *args, **kwargs):
        seen.append(np.asarray(mask))
        return original(self, image, reference, mask, *args, **kwargs)

    monkeypatch.setattr(refiner_trainer.RefinerTrainer, "task_step", spy)
    losses = {}
    for target in ("centroid", "core"):
        config = tiny_config.replace(task={"detection_target": target})
        source = synthesis.TissueSource.from_paths(tissue, config.synthesis, mpp=0.25)
        workdir = tmp_path / target
        seen.clear()
        refiner_run.train_refiner(config, workdir, source, export=False)
        masks = np.concatenate(seen)
        cores = masks & 8 > 0
        assert cores.any() == (target == "core"), target
        assert (masks[cores] & 1).all()
        losses[target] = _scalars(workdir)["task/loss"]
    assert losses["core"].keys() == losses["centroid"].keys() and losses["core"]
    first = min(losses["core"])
    assert np.isfinite(float(losses["core"][first]))
    assert float(losses["core"][first]) != pytest.approx(float(losses["centroid"][first]))
