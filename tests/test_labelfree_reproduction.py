"""Smoke test of the end-to-end reproduction at the `tiny` preset on a small real subset."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def _mini_monuseg(monuseg, root):
    """Two MoNuSeg train images as tissue, one test image with its labels."""
    for split, names in (("train", sorted(os.listdir(monuseg / "train" / "images"))[:2]),
                         ("test", sorted(os.listdir(monuseg / "test" / "images"))[:1])):
        for kind in ("images", "labels"):
            (root / split / kind).mkdir(parents=True)
            for name in names:
                os.symlink(monuseg / split / kind / name, root / split / kind / name)
    shutil.copy(monuseg / "manifest.json", root / "manifest.json")
    return root


def test_tiny_reproduction_runs_resumes_and_reports(monuseg, tmp_path):
    data = _mini_monuseg(monuseg, tmp_path / "data")
    command = [sys.executable, "benchmarks/labelfree_reproduction.py", "--protocol=monuseg",
               f"--data={data}", f"--workdir={tmp_path / 'run'}", "--preset=tiny", "--seed=3",
               "--task_steps=3"]  # tiny's own is 2
    first = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    line = json.loads(first.stdout.strip().splitlines()[-1])
    assert line["n_images"] == 1 and line["seed"] == 3 and line["preset"] == "tiny"
    assert line["task_steps"] == 3 and line["task_share"] is None
    assert line["self_training"] is None and line["real_images"] == 0  # tiny: one round
    for key in ("dice1", "dice2", "dice_avg", "aji", "aji_plus", "pq"):
        assert 0.0 <= line["mean"][key] <= 1.0
    refiner = tmp_path / "run" / "refiner"
    assert (refiner / "done.json").exists()
    # The finished GAN's history buffer is deleted; its patches stay in the export.
    assert sorted(name for name in os.listdir(refiner) if name.startswith("history")) == []
    assert json.loads((refiner / "done.json").read_text())["patches"] == str(
        refiner / "refined_patches.h5")
    # The exported task net started from the GAN's jointly trained one.
    task_record = json.loads((tmp_path / "run" / "task" / "done.json").read_text())
    assert task_record["init_weights"] == str(
        tmp_path / "run" / "refiner" / "export" / "task_net.weights.h5")
    assert os.path.getsize(task_record["init_weights"]) > 1000
    assert json.loads((tmp_path / "run" / "task" / "config.json").read_text())["task"][
        "train_steps"] == 3
    figures = tmp_path / "run" / "figures"
    test_name = sorted(os.listdir(data / "test" / "images"))[0][:-len(".png")]
    organ = line["figures"]["overlays"][0].split("_")[2]
    assert line["figures"]["overlays"] == [f"overlay_best_{organ}_{test_name}.png",
                                           f"overlay_worst_{organ}_{test_name}.png"]
    for name in line["figures"]["overlays"] + ["fig6_refinement.png", "fig7_importance.png"]:
        assert (figures / name).stat().st_size > 1000, name
    buffer_rows = line["figures"]["importance"]["n"]
    # Fig. 7 shows the weights the task net trained with (saved by the task stage).
    assert len(np.load(task_record["rescored_weights"])) == buffer_rows
    assert buffer_rows > 0 and 0.0 <= line["figures"]["importance"]["at_high"] <= 1.0
    # A second run finds every stage done and reproduces the numbers from the export.
    again = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    second = json.loads(again.stdout.strip().splitlines()[-1])
    assert second["mean"] == line["mean"] and second["export"] == line["export"]
    # The diagnosis re-derives the run's held-out synthetic patches and its test score.
    diagnosis = subprocess.run([sys.executable, "benchmarks/threshold_transfer.py",
                                f"--run={tmp_path / 'run'}"], cwd=REPO, capture_output=True,
                               text=True, timeout=900)
    assert diagnosis.returncode == 0, diagnosis.stderr[-3000:]
    transfer = json.loads(diagnosis.stdout.strip().splitlines()[-1])
    assert transfer["synthetic"]["selected"]["aji"] == pytest.approx(
        task_record["selection"]["score"], abs=1e-4)
    assert transfer["synthetic"]["best"]["aji"] >= transfer["synthetic"]["selected"]["aji"]
    assert transfer["test_reinhard"]["selected"]["aji"] == pytest.approx(line["mean"]["aji"],
                                                                        abs=1e-4)
    assert transfer["test_reinhard"]["best"]["aji"] >= transfer["test_reinhard"]["selected"]["aji"]


def test_threshold_transfer_of_an_unfinished_run_is_a_clear_error(tmp_path):
    result = subprocess.run([sys.executable, "benchmarks/threshold_transfer.py",
                             f"--run={tmp_path}"], cwd=REPO, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode != 0
    assert "no finished task stage" in result.stderr and "Traceback" not in result.stderr


def test_tiny_plus_real_mixes_the_tissue_labels_in(monuseg, tmp_path):
    data = _mini_monuseg(monuseg, tmp_path / "data")
    command = [sys.executable, "benchmarks/labelfree_reproduction.py", "--protocol=monuseg",
               f"--data={data}", f"--workdir={tmp_path / 'run'}", "--preset=tiny", "--seed=3",
               "--ablation=plus_real"]
    run = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    line = json.loads(run.stdout.strip().splitlines()[-1])
    assert line["ablation"] == "plus_real" and line["real_images"] == 2
    tissue = sorted(os.listdir(data / "train" / "images"))
    assert sorted(os.listdir(tmp_path / "run" / "real" / "labels")) == tissue
    assert (tmp_path / "run" / "real" / "labels" / tissue[0]).resolve() == (
        monuseg / "train" / "labels" / tissue[0]).resolve()


@pytest.mark.parametrize("share", ["1.5", "0"])
def test_task_share_outside_the_open_interval_is_refused_at_parsing(share, tmp_path):
    command = [sys.executable, "benchmarks/labelfree_reproduction.py", "--protocol=kumar",
               f"--workdir={tmp_path / 'run'}", f"--task_share={share}"]  # no --budget_min
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "--task_share must lie in (0, 1)" in result.stderr
    assert not (tmp_path / "run").exists()
