"""The label-free choice of the classical count's settings: its scores on a hand-made case,
and the command on a two-image subset (no real label read)."""

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from simgan_histo.evaluation import baseline
from tests.conftest import REPO
from tests.test_labelfree_reproduction import _mini_monuseg


def _discs(centres, radius=8, size=120):
    rgb = np.full((size, size, 3), (235, 190, 215), np.uint8)  # pink stroma
    labels = np.zeros((size, size), np.uint16)
    for index, (x, y) in enumerate(centres, 1):
        cv2.circle(rgb, (x, y), radius, (70, 45, 130), -1)  # dark purple, ≈ 200 px
        cv2.circle(labels, (x, y), radius, index, -1)
    noise = np.random.default_rng(0).integers(-6, 7, rgb.shape)
    return np.clip(rgb + noise, 0, 255).astype(np.uint8), labels


def test_score_on_hand_drawn_nuclei():
    image, labels = _discs([(30, 30), (90, 30), (60, 90)])
    row = baseline.count_score(image[None], labels[None], baseline.ClassicalConfig(), 0.25)
    assert row["count_ratio"] == 1.0 and row["mean_abs_log"] == pytest.approx(0.0)
    assert row["aji"] > 0.8
    # A fourth true nucleus the image does not show: found 3 of 4 → |log(4 / 5)|.
    cv2.circle(labels, (100, 100), 6, 4, -1)  # 113 px >= the 80-px smallest area
    row = baseline.count_score(image[None], labels[None], baseline.ClassicalConfig(), 0.25)
    assert row["count_ratio"] == pytest.approx(0.75)
    assert row["mean_abs_log"] == pytest.approx(abs(np.log(4 / 5)))
    # Nuclei smaller than the baseline's smallest area are not counted as true.
    larger = baseline.ClassicalConfig(min_area_um2=7.5)  # 120 px
    assert baseline.true_counts(labels[None], larger, 0.25).tolist() == [3]


@pytest.mark.slow
def test_command_scores_each_grid_point_and_picks_the_least_count_error(monuseg, tmp_path):
    data = _mini_monuseg(monuseg, tmp_path / "data")
    result = subprocess.run([sys.executable, "benchmarks/count_settings.py", "--protocol=monuseg",
                             f"--data={data}", "--patches=4", "--patch_size=200",
                             "--h_grid=0.125,1.0", "--smooth_grid=0.25"], cwd=REPO,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    line = json.loads(result.stdout.strip().splitlines()[-1])
    assert [(row["h_um"], row["smooth_um"]) for row in line["rows"]] == [(0.125, 0.25),
                                                                          (1.0, 0.25)]
    best = min(line["rows"], key=lambda row: row["mean_abs_log"])
    assert line["chosen"] == {"h_um": best["h_um"], "smooth_um": best["smooth_um"]}
    assert line["patches"] == 4 and line["true_per_patch"] > 0


@pytest.mark.parametrize("grid", ["--h_grid=", "--smooth_grid=-0.5", "--h_grid=0.1,abc"])
def test_command_refuses_an_empty_or_bad_grid_before_any_work(grid):
    result = subprocess.run([sys.executable, "benchmarks/count_settings.py", grid], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "needs one or more numbers >= 0" in result.stderr
