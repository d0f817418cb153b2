"""predict.py and evaluate.py end to end on small real folders, and their errors."""

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from simgan_histo import config as config_lib
from simgan_histo.evaluation import predict_lib
from tests import test_api
from tests.conftest import REPO

NAMES = ("TCGA-ZF-A9R5-01A-01-TS1", "TCGA-HT-8564-01Z-00-DX1")


def _run(script, *args):
    return subprocess.run([sys.executable, script, *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def crops(monuseg, tmp_path_factory):
    """images/ and labels/ with 256×256 crops of two MoNuSeg test images."""
    root = tmp_path_factory.mktemp("crops")
    for name in NAMES:
        rgb = cv2.imread(str(monuseg / "test" / "images" / f"{name}.png"))
        labels = cv2.imread(str(monuseg / "test" / "labels" / f"{name}.png"),
                            cv2.IMREAD_UNCHANGED)
        (root / "images").mkdir(exist_ok=True)
        cv2.imwrite(str(root / "images" / f"{name}.png"), rgb[200:456, 200:456])
        predict_lib.write_labels(root / "labels" / f"{name}.png", labels[200:456, 200:456])
    return root


def test_classical_predict_then_evaluate(crops, tmp_path):
    result = _run("predict.py", "--method=classical", f"--images={crops / 'images'}",
                  f"--out={tmp_path / 'pred'}")
    assert result.returncode == 0, result.stderr
    for name in NAMES:
        labels = cv2.imread(str(tmp_path / "pred" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
        assert labels.dtype == np.uint16 and labels.shape == (256, 256) and labels.max() > 10
    result = _run("evaluate.py", f"--pred={tmp_path / 'pred'}", f"--gt={crops / 'labels'}",
                  f"--json={tmp_path / 'metrics.json'}")
    assert result.returncode == 0, result.stderr
    assert "pooled dice1" in result.stdout and NAMES[0] in result.stdout
    summary = json.loads((tmp_path / "metrics.json").read_text())
    assert summary["n_images"] == 2 and set(summary["per_image"]) == set(NAMES)
    assert set(summary["mean"]) == {"dice1", "dice2", "dice_avg", "aji", "aji_plus", "pq",
                                    "dq", "sq"}
    assert summary["mean"]["dice1"] > 0.7 and summary["pooled"]["dice1"] > 0.7


@pytest.fixture(scope="module")
def model_and_scenes(tmp_path_factory):
    """A real export of the toy net (tests/test_api.py) and two scenes with their labels."""
    from simgan_histo import tf_setup  # pylint: disable=import-outside-toplevel
    tf_setup.import_tensorflow()
    from simgan_histo.training import export  # pylint: disable=import-outside-toplevel

    root = tmp_path_factory.mktemp("model")
    export.export_task_model(test_api._toy_net(), root / "export", config_lib.tiny(),
                             test_api._settings())
    for index, shape in enumerate([(90, 98), (100, 100)]):
        rgb, labels = test_api._scene(shape)
        (root / "images").mkdir(exist_ok=True)
        cv2.imwrite(str(root / "images" / f"scene{index}.png"), rgb[..., ::-1])
        predict_lib.write_labels(root / "labels" / f"scene{index}.png", labels)
    return root


def test_model_predict_uses_inference_json(model_and_scenes, tmp_path):
    root = model_and_scenes
    result = _run("predict.py", f"--model={root / 'export'}", f"--images={root / 'images'}",
                  f"--out={tmp_path / 'pred'}")
    assert result.returncode == 0, result.stderr
    assert "cuInit" not in result.stderr and "oneDNN" not in result.stderr
    summary = predict_lib.evaluate_folder(tmp_path / "pred", root / "labels")
    assert summary["mean"]["aji"] > 0.85 and summary["mean"]["dq"] == 1.0


@pytest.mark.slow
def test_model_predict_flags_override_inference_json(model_and_scenes, tmp_path):
    root = model_and_scenes
    result = _run("predict.py", f"--model={root / 'export' / '1'}", "--min_area_px=1000",
                  f"--images={root / 'images'}", f"--out={tmp_path / 'pred'}")
    assert result.returncode == 0, result.stderr
    masks = [cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in (tmp_path / "pred").iterdir()]
    assert len(masks) == 2 and all(mask.max() == 0 for mask in masks)


def test_scripts_report_bad_inputs(crops, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = _run("predict.py", "--method=classical", f"--images={empty}", f"--out={tmp_path}")
    assert result.returncode == 2 and "no images" in result.stderr
    gray = tmp_path / "gray"
    gray.mkdir()
    cv2.imwrite(str(gray / "g.png"), np.zeros((32, 32), np.uint8))
    result = _run("predict.py", "--method=classical", f"--images={gray}", f"--out={tmp_path}")
    assert result.returncode == 2 and "expected an RGB image" in result.stderr
    partial = tmp_path / "partial"
    partial.mkdir()
    predict_lib.write_labels(partial / f"{NAMES[0]}.png", np.zeros((256, 256), np.uint16))
    result = _run("evaluate.py", f"--pred={partial}", f"--gt={crops / 'labels'}")
    assert result.returncode == 2 and "missing predictions" in result.stderr
    predict_lib.write_labels(partial / "extra.png", np.zeros((256, 256), np.uint16))
    predict_lib.write_labels(partial / f"{NAMES[1]}.png", np.zeros((256, 256), np.uint16))
    result = _run("evaluate.py", f"--pred={partial}", f"--gt={crops / 'labels'}")
    assert result.returncode == 2 and "missing ground-truth labels" in result.stderr
