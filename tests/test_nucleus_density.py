"""The density diagnosis on a two-image subset: real counts match the labels, every tile
is counted, and the synthetic counts are the patch file's own."""

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from simgan_histo import config as config_lib
from simgan_histo import synthesis
from tests.conftest import REPO
from tests.test_labelfree_reproduction import _mini_monuseg

pytestmark = pytest.mark.slow


def test_counts_per_tile_against_the_labels(monuseg, tmp_path):
    data = _mini_monuseg(monuseg, tmp_path / "data")
    result = subprocess.run([sys.executable, "benchmarks/nucleus_density.py", "--protocol=monuseg",
                             f"--data={data}", "--patches=48", "--preset=tiny"], cwd=REPO,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    line = json.loads(result.stdout.strip().splitlines()[-1])
    assert line["synthetic_per_patch"]["n"] == 48
    names = sorted(path.name for path in (data / "train" / "labels").iterdir())
    assert sorted(row["image"] for row in line["per_image"]) == names
    # The synthetic counts are those of the same patches made here (seed 0, deterministic).
    config = config_lib.get_preset("tiny").synthesis
    source = synthesis.TissueSource.from_paths(sorted((data / "train" / "images").iterdir()),
                                               config, mpp=0.25)
    batch = synthesis.make_batch(source, 0, range(48))
    per_patch = np.array([len(np.unique(ids)) - 1 for ids in batch["labels"]])
    per_patch = per_patch / (config.patch_size ** 2 / 200 ** 2)
    for row in line["per_image"]:
        labels = cv2.imread(str(data / "train" / "labels" / row["image"]), cv2.IMREAD_UNCHANGED)
        expected = (len(np.unique(labels)) - 1) / (labels.size / 200 ** 2)
        assert row["real"] == pytest.approx(expected, abs=0.05)
        tile = [tile.name for tile in source.tiles].index(row["image"])
        assert row["synthetic"] == pytest.approx(per_patch[batch["source"] == tile].mean(),
                                                 abs=0.05)
        assert row["classical"] > 0 and row["components"] > 0
    test_labels = next((data / "test" / "labels").iterdir())
    labels = cv2.imread(str(test_labels), cv2.IMREAD_UNCHANGED)
    assert line["real_test"]["n"] == 1
    assert line["real_test"]["median"] == pytest.approx(
        (len(np.unique(labels)) - 1) / (labels.size / 200 ** 2), abs=0.05)
