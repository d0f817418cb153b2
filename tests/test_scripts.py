"""Every top-level script answers --help without TensorFlow's start-up noise, and names a
missing input instead of raising."""

import subprocess
import sys

import pytest

from tests.conftest import REPO

SCRIPTS = ["train_refiner.py", "train_task.py", "segment_wsi.py", "synthesize.py",
           "predict.py", "evaluate.py", "demo.py"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_answers_help(script):
    result = subprocess.run([sys.executable, script, "--help"], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    # absl exits with status 1 after printing --help; anything else is a failure.
    assert result.returncode in (0, 1), result.stderr
    assert "Usage:" in result.stdout
    assert "--preset" in result.stdout and "--workdir" in result.stdout
    assert "cuInit" not in result.stderr and "oneDNN" not in result.stderr


def test_tensorflow_import_is_quiet():
    code = ("from simgan_histo import tf_setup; tf = tf_setup.import_tensorflow(); "
            "print(tf.reduce_sum(tf.ones(3)).numpy())")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "3.0"
    assert result.stderr.strip() == "", result.stderr


def test_package_import_does_not_import_tensorflow():
    code = "import sys, simgan_histo, simgan_histo.config; print('tensorflow' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                            text=True, timeout=60)
    assert result.stdout.strip() == "False", result.stderr


MISSING = "no_such_input_7f3a"
MISSING_INPUT = {
    "train_refiner.py": ["--ref_dir=" + MISSING, "--workdir=w"],
    "train_task.py": ["--patches=" + MISSING + ".h5", "--workdir=w"],
    "synthesize.py": ["--ref_dir=" + MISSING, "--out=p.h5", "--num=2"],
    "predict.py": ["--method=classical", "--images=" + MISSING, "--out=o"],
    "evaluate.py": ["--pred=" + MISSING, "--gt=" + MISSING],
    "segment_wsi.py": ["--slides=" + MISSING + ".svs", "--out=o"],
}


@pytest.mark.parametrize("script", sorted(MISSING_INPUT))
def test_missing_input_is_a_clear_error(script, tmp_path):
    """A mistyped input path fails with a message naming it, not a traceback or an empty run."""
    result = subprocess.run([sys.executable, str(REPO / script)] + MISSING_INPUT[script],
                            cwd=tmp_path, capture_output=True, text=True, timeout=180)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Traceback" not in output, output
    assert MISSING in output, output
    assert not any(tmp_path.iterdir()), sorted(p.name for p in tmp_path.iterdir())
