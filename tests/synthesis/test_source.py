"""Tissue source: files → resampled, prepared tiles, with every rejection counted."""

import shutil

import cv2
import numpy as np
import pytest

from simgan_histo import synthesis
from tests.synthesis.conftest import TILE_IDS
from tests.synthesis.conftest import small_config
from tests.synthesis.conftest import write_rgb


def _tissue(tissue_dir, index=0):
    return cv2.cvtColor(cv2.imread(str(tissue_dir / f"{TILE_IDS[index]}.png")),
                        cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def mixed_dir(tmp_path_factory, tissue_dir):
    """Two usable images (RGB PNG, RGBA PNG) and one of every kind of bad input."""
    folder = tmp_path_factory.mktemp("mixed")
    rgb = _tissue(tissue_dir)
    write_rgb(folder / "good.png", rgb)
    rgba = np.dstack([cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), np.full(rgb.shape[:2], 255, np.uint8)])
    cv2.imwrite(str(folder / "alpha.png"), rgba)
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    cv2.imwrite(str(folder / "gray.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
    write_rgb(folder / "tiny.png", rgb[:90, :90])
    write_rgb(folder / "white.png", np.full_like(rgb, 255))
    write_rgb(folder / "dark.png", np.full_like(rgb, 5))
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_mixed_directory_counts_every_rejection(mixed_dir):
    source = synthesis.TissueSource.from_paths(mixed_dir, small_config(), mpp=0.25)
    assert source.num_tiles == 2
    assert sorted(tile.name for tile in source.tiles) == ["alpha.png", "good.png"]
    assert source.rejections == {"unreadable": 1, "grayscale": 1, "too_small": 1,
                                 "no_tissue": 2, "unsupported": 1}
    summary = source.summary()
    assert "2 tissue tiles" in summary and "no_tissue 2" in summary
    # RGBA with an opaque alpha reads as the same tissue.
    np.testing.assert_array_equal(source.tiles[0].rgb, source.tiles[1].rgb)


def test_nothing_usable_fails_fast_naming_reasons(tmp_path, mixed_dir):
    for name in ("corrupt.png", "white.png", "dark.png", "tiny.png"):
        shutil.copy(mixed_dir / name, tmp_path / name)
    with pytest.raises(ValueError) as caught:
        synthesis.TissueSource.from_paths(tmp_path, small_config(), mpp=0.25)
    message = str(caught.value)
    assert "no usable tissue tile" in message
    assert "no_tissue 2" in message and "unreadable 1" in message and "too_small 1" in message


def test_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        synthesis.TissueSource.from_paths(tmp_path / "absent", small_config())


def test_resampled_to_the_working_mpp(tissue_dir):
    # A 0.5 µm/px image is upsampled ×2 to 0.25 µm/px.
    source = synthesis.TissueSource.from_paths(tissue_dir / f"{TILE_IDS[1]}.png",
                                               small_config(), mpp=0.5)
    assert source.tiles[0].shape == (640, 640)


def test_max_tiles(tissue_dir):
    source = synthesis.TissueSource.from_paths(tissue_dir, small_config(), mpp=0.25,
                                               max_tiles=2)
    assert source.num_tiles == 2


@pytest.mark.slow
def test_slide_is_cut_into_tissue_tiles(sample_slide):
    config = small_config(source_tile_px=400, max_tiles_per_slide=3)
    source = synthesis.TissueSource.from_paths(sample_slide, config)
    assert 1 <= source.num_tiles <= 3
    for tile in source.tiles:
        assert tile.name.startswith(sample_slide.name + "@")
        assert tile.shape == (400, 400)  # 0.499 µm/px read at 0.25: 200 px → 400 px
        assert tile.tissue_fraction >= config.min_tissue_fraction
