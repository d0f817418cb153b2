"""synthesize.py end to end: a real patch file from real tissue, and a clear failure."""

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from simgan_histo import config as config_lib
from simgan_histo import patch_file
from tests.conftest import REPO


def _run(*args):
    return subprocess.run([sys.executable, "synthesize.py", "--preset=tiny", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def tissue(tmp_path_factory, monuseg):
    folder = tmp_path_factory.mktemp("script_tissue")
    for name in sorted((monuseg / "train" / "images").glob("*.png"))[:2]:
        cv2.imwrite(str(folder / name.name), cv2.imread(str(name))[:300, :300])
    return folder


@pytest.mark.slow
def test_writes_the_patch_file_and_a_preview(tissue, tmp_path):
    out, preview = tmp_path / "patches.h5", tmp_path / "grid.png"
    result = _run(f"--ref_dir={tissue}", f"--out={out}", "--num=20", "--workers=2", "--mpp=0.25",
                  f"--preview={preview}")
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout[result.stdout.index("{"):])
    assert summary["made"] == 20 and summary["tiles"] == 2 and summary["workers"] == 2
    with patch_file.PatchReader(out) as reader:
        assert len(reader) == 20 and reader.patch_size == config_lib.tiny().synthesis.patch_size
        assert json.loads(reader.config_json)["preset"] == "tiny"
        rows = reader.read(range(20))
    assert rows["labels"].max() > 0 and (rows["mask"] <= 7).all()
    assert cv2.imread(str(preview)) is not None


def test_no_usable_tissue_exits_non_zero_naming_the_reasons(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    cv2.imwrite(str(bad / "white.png"), np.full((300, 300, 3), 255, np.uint8))
    (bad / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "never.h5"
    result = _run(f"--ref_dir={bad}", f"--out={out}", "--num=5")
    assert result.returncode != 0
    assert "no usable tissue tile" in result.stdout
    assert "no_tissue 1" in result.stdout and "unreadable 1" in result.stdout
    assert not out.exists()
