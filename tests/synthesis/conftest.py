"""Fixtures for the synthesis tests: small real H&E tiles (MoNuSeg train crops) and configs."""

import dataclasses

import cv2
import pytest

from simgan_histo import config as config_lib
from simgan_histo import synthesis

# Four organs, so the across-tile spread of the realism check means something.
TILE_IDS = ("TCGA-A7-A13E-01Z-00-DX1", "TCGA-HE-7129-01Z-00-DX1", "TCGA-18-5592-01Z-00-DX1",
            "TCGA-G2-A2EK-01A-02-TSB")
TILE_PX = 320


def small_config(**overrides) -> config_lib.SynthesisConfig:
    """cpu_small's nucleus statistics at a 96-px patch (fast, still several nuclei)."""
    base = config_lib.cpu_small().synthesis
    return dataclasses.replace(base, patch_size=96, margin_px=16, **overrides)


def write_rgb(path, rgb) -> None:
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


@pytest.fixture(scope="session")
def tissue_dir(tmp_path_factory, monuseg):
    """Crops of real MoNuSeg train tissue as PNGs (no MPP recorded: pass mpp=0.25)."""
    folder = tmp_path_factory.mktemp("tissue")
    for name in TILE_IDS:
        bgr = cv2.imread(str(monuseg / "train" / "images" / f"{name}.png"))
        cv2.imwrite(str(folder / f"{name}.png"), bgr[:TILE_PX, :TILE_PX])
    return folder


@pytest.fixture(scope="session")
def source(tissue_dir):
    return synthesis.TissueSource.from_paths(tissue_dir, small_config(), mpp=0.25)
