"""train_task.py end to end on real files: a tiny run exports a model; bad inputs fail clearly."""

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.training import toy_data


def _run(*args):
    return subprocess.run([sys.executable, "train_task.py", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_tiny_run_exports_a_model(tmp_path):
    patches = toy_data.write_patch_file(tmp_path / "a.h5", count=8, seed=1)
    more = toy_data.write_patch_file(tmp_path / "b.h5", count=8, seed=2)
    real = toy_data.write_labeled_folder(tmp_path / "real", count=2)
    result = _run(f"--workdir={tmp_path / 'run'}", "--preset=tiny", "--steps=2",
                  f"--patches={patches},{more}", f"--real_dir={real}",
                  "--importance_weights=off", f"--export_dir={tmp_path / 'model'}")
    assert result.returncode == 0, result.stderr[-3000:]
    settings = json.loads((tmp_path / "model" / "1" / "assets" / "inference.json").read_text())
    assert settings["preset"] == "tiny" and settings["selection"]["validation"] == "synthetic"
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["task"]["train_steps"] == 2
    assert config["task"]["use_importance_weights"] is False
    assert "cuInit" not in result.stderr


def test_missing_patch_file_is_a_clear_error(tmp_path):
    result = _run(f"--workdir={tmp_path}", "--preset=tiny", f"--patches={tmp_path / 'no.h5'}")
    assert result.returncode == 2
    assert "patch file not found" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_init_weights_is_a_clear_error(tmp_path):
    patches = toy_data.write_patch_file(tmp_path / "a.h5", count=8, seed=1)
    result = _run(f"--workdir={tmp_path / 'run'}", "--preset=tiny", f"--patches={patches}",
                  f"--init_weights={tmp_path / 'no.weights.h5'}")
    assert result.returncode == 2
    assert "--init_weights file not found" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_init_weights_of_another_network_is_a_clear_error(tmp_path):
    patches = toy_data.write_patch_file(tmp_path / "a.h5", count=8, seed=1)
    wrong = tmp_path / "other.weights.h5"  # an HDF5 file, but no task net's weights
    wrong.write_bytes(patches.read_bytes())
    result = _run(f"--workdir={tmp_path / 'run'}", "--preset=tiny", "--steps=2",
                  f"--patches={patches}", f"--init_weights={wrong}")
    assert result.returncode == 2
    assert "could not be loaded" in result.stderr
    assert "Traceback" not in result.stderr


def test_no_training_data_is_a_usage_error(tmp_path):
    result = _run(f"--workdir={tmp_path}", "--preset=tiny")
    assert result.returncode == 1
    assert "--patches" in result.stderr and "--real_dir" in result.stderr
