"""Every flag module imports together (each flag defined once), and shared flags mean one thing."""

import subprocess
import sys

from absl import flags
from absl.testing import flagsaver
import pytest

from tests.conftest import REPO

FLAG_MODULES = sorted(path.stem for path in (REPO / "flags").glob("*.py")
                      if path.stem != "__init__")
SCRIPTS = ("segment_wsi.py", "predict.py", "synthesize.py", "train_refiner.py", "train_task.py",
           "evaluate.py", "demo.py")


def test_all_flag_modules_import_together_in_any_order():
    assert {"common", "shared", "wsi", "refiner", "synthesis", "task", "predict"} <= set(
        FLAG_MODULES)
    code = ("import importlib, sys\nfrom absl import flags\n"
            "for name in sys.argv[1:]:\n    importlib.import_module('flags.' + name)\n"
            "for flag in ('mpp', 'out', 'workers'):\n"
            "    print(flag, flags.FLAGS.find_module_defining_flag(flag))\n")
    for order in (FLAG_MODULES, FLAG_MODULES[::-1]):
        result = subprocess.run([sys.executable, "-c", code, *order], cwd=REPO,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr  # DuplicateFlagError otherwise
        assert result.stdout.split("\n")[:3] == [
            "mpp flags.shared", "out flags.shared", "workers flags.shared"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_script_parses_its_flags(script):
    result = subprocess.run([sys.executable, script, "--helpshort"], cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert "Error" not in result.stderr, result.stderr  # absl's help exits with status 1
    assert "--preset" in result.stdout


def test_shared_flags_reach_each_scripts_config():
    from flags import common  # pylint: disable=unused-import
    from flags import synthesis as synthesis_flags
    from flags import wsi as wsi_flags
    if not flags.FLAGS.is_parsed():
        flags.FLAGS(["test"])
    with flagsaver.flagsaver(preset="tiny"):
        flags.FLAGS["workers"].parse("3")
        flags.FLAGS["mpp"].parse("0.5")
        flags.FLAGS["engine"].parse("dask")
        try:
            wsi_config = wsi_flags.to_config(flags.FLAGS)
            synthesis_config = synthesis_flags.to_config(flags.FLAGS)
        finally:
            for name in ("workers", "mpp", "engine"):
                flags.FLAGS[name].unparse()
    assert wsi_config.runtime.workers == synthesis_config.runtime.workers == 3
    assert wsi_config.wsi.mpp == 0.5 and wsi_config.wsi.engine == "dask"
    assert synthesis_flags.MPP is wsi_flags.MPP  # one flag object, two users
    with flagsaver.flagsaver(preset="tiny"):
        assert wsi_flags.to_config(flags.FLAGS).wsi.engine == "local"  # the preset's


def test_flag_modules_import_no_tensorflow():
    code = ("import sys\nimport " + ", ".join(f"flags.{name}" for name in FLAG_MODULES)
            + "\nprint('tensorflow' in sys.modules, 'dask' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                            text=True, timeout=60)
    assert result.stdout.strip() == "False False", result.stderr


def test_importance_weights_reads_on_off_and_the_no_prefix():
    from flags import refiner as refiner_flags
    from flags import task as task_flags
    if not flags.FLAGS.is_parsed():
        flags.FLAGS(["test"])
    cases = ((["--importance_weights=off"], False), (["--noimportance_weights"], False),
             (["--importance_weights=on"], True), (["--importance_weights"], True))
    for argv, expected in cases:
        with flagsaver.flagsaver(preset="tiny"):
            flags.FLAGS(["test", *argv], known_only=True)
            try:
                refiner_config = refiner_flags.to_config(flags.FLAGS)
                task_config = task_flags.to_config(flags.FLAGS)
            finally:
                flags.FLAGS["importance_weights"].unparse()
        assert refiner_config.gan.use_importance_weights is expected
        assert task_config.task.use_importance_weights is expected


def test_flood_on_flag_offers_every_watershed_surface():
    from flags import predict as predict_flags  # pylint: disable=unused-import
    from simgan_histo.config import FLOOD_SURFACES
    assert tuple(flags.FLAGS["flood_on"].parser.enum_values) == FLOOD_SURFACES


def test_threshold_flags_name_every_watershed_setting():
    import dataclasses
    from flags import predict as predict_flags
    from simgan_histo.postprocess import watershed
    assert set(predict_flags.THRESHOLD_FLAGS) == {
        field.name for field in dataclasses.fields(watershed.Thresholds)}
