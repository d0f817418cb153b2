"""The GAN trainer end to end at the `tiny` preset: outputs, exact resume, devices, NaNs."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tissue(monuseg):
    return str(monuseg / "train" / "images" / "TCGA-18-5592-01Z-00-DX1.png")


def _worker(workdir, tissue, iterations, *extra, wait=True):
    command = [sys.executable, "-m", "tests.training.refiner_worker", str(workdir), tissue,
               str(iterations), *extra]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONHASHSEED="0")
    if not wait:
        return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)


def _buffer_rows(workdir):
    from simgan_histo import buffer as buffer_lib
    with buffer_lib.HistoryBuffer.open(pathlib.Path(workdir) / "history.h5") as buffer:
        return buffer.read(np.arange(len(buffer)))


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory, tissue):
    workdir = tmp_path_factory.mktemp("straight")
    result = _worker(workdir, tissue, 7)
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir


def test_full_tiny_run_writes_every_output(straight_run):
    workdir = straight_run
    assert (workdir / "config.json").exists()
    assert list((workdir / "checkpoints").glob("ckpt-7.index"))
    events = list((workdir / "tensorboard" / "refiner").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    for name in ("refiner", "discriminator"):
        assert (workdir / "export" / name / "1" / "saved_model.pb").exists()
    rows = _buffer_rows(workdir)
    assert len(rows["image"]) > 0 and rows["image"].dtype == np.uint8
    assert (rows["step"] >= 0).all()
    summary = json.loads((workdir / "refiner_summary.json").read_text())
    assert summary["iterations"] == 7


def test_tensorboard_has_the_named_scalars(straight_run):
    from tensorboard.backend.event_processing import event_accumulator
    events = str(next((straight_run / "tensorboard" / "refiner").glob("events.out.tfevents.*")))
    accumulator = event_accumulator.EventAccumulator(events, size_guidance={"tensors": 0})
    accumulator.Reload()
    tags = set(accumulator.Tags()["tensors"])
    for tag in ("refiner/reg", "refiner/adv", "discriminator/loss", "task/loss", "weights/mean",
                "discriminator/accuracy_real", "time/iteration_s",
                "patches/initial_refined_reference"):
        assert tag in tags, sorted(tags)


def test_saved_models_answer_their_signatures(straight_run):
    import tensorflow as tf
    image = tf.random.uniform([1, 64, 64, 3], 0, 255)
    refiner = tf.saved_model.load(str(straight_run / "export" / "refiner" / "1"))
    refined = refiner.signatures["serving_default"](image=image, reference=image)["refined"]
    assert refined.shape == (1, 64, 64, 3)
    assert 0.0 <= float(tf.reduce_min(refined)) and float(tf.reduce_max(refined)) <= 255.0
    discriminator = tf.saved_model.load(str(straight_run / "export" / "discriminator" / "1"))
    logits = discriminator.signatures["serving_default"](image=image, reference=image)["logits"]
    assert logits.shape[0] == 1 and logits.shape[-1] == 1


def test_resume_after_kill_is_bit_exact(straight_run, tmp_path, tissue):
    workdir = tmp_path / "killed"
    process = _worker(workdir, tissue, 7, wait=False)
    deadline = time.time() + 600
    while not list((workdir / "checkpoints").glob("ckpt-4.index")):
        assert process.poll() is None, process.stderr.read()[-3000:]
        assert time.time() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    resumed = _worker(workdir, tissue, 7)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed_from" in resumed.stdout
    straight = np.load(straight_run / "final_weights.npz")
    again = np.load(workdir / "final_weights.npz")
    assert sorted(straight.files) == sorted(again.files)
    for key in straight.files:
        np.testing.assert_array_equal(straight[key], again[key], err_msg=key)
    rows_a, rows_b = _buffer_rows(straight_run), _buffer_rows(workdir)
    for key in rows_a:
        np.testing.assert_array_equal(rows_a[key], rows_b[key], err_msg=key)


def test_mirrored_strategy_on_two_logical_cpus(tmp_path, tissue):
    result = _worker(tmp_path / "mirrored", tissue, 7, "--mirrored")
    assert result.returncode == 0, result.stderr[-3000:]
    weights = np.load(tmp_path / "mirrored" / "final_weights.npz")
    assert all(np.isfinite(weights[key]).all() for key in weights.files)


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(workdir, tissue, tiny_config):
    from simgan_histo import synthesis
    from simgan_histo.training import refiner_run, refiner_trainer
    import tensorflow as tf

    source = synthesis.TissueSource.from_paths(tissue, tiny_config.synthesis, mpp=0.25)
    refiner_run.train_refiner(tiny_config, workdir, source, num_iterations=1, export=False)
    # An overflowing regulariser makes the refiner's loss infinite at the next iteration.
    poisoned = tiny_config.replace(gan={"alpha": 1e38, "lambda_l1": 1e38})
    with pytest.raises(refiner_trainer.NonFiniteLossError, match="iteration 1"):
        refiner_run.train_refiner(poisoned, workdir, source, export=False)
    checkpoints = sorted(p.name for p in (workdir / "checkpoints").glob("ckpt-*.index"))
    assert checkpoints == ["ckpt-1.index"]
    reader = tf.train.load_checkpoint(str(workdir / "checkpoints" / "ckpt-1"))
    for name in reader.get_variable_to_shape_map():
        value = reader.get_tensor(name)
        if isinstance(value, np.ndarray) and value.dtype.kind == "f":
            assert np.isfinite(value).all(), name


def test_trainer_task_net_is_the_unet(tiny_config, workdir):
    from simgan_histo.models import unet
    from simgan_histo.training import refiner_trainer
    trainer = refiner_trainer.RefinerTrainer(tiny_config, workdir)
    reference = unet.build_unet(tiny_config.task)
    assert [layer.name for layer in trainer.task_net.layers] == \
        [layer.name for layer in reference.layers]
    assert trainer.task_net.count_params() == reference.count_params()
