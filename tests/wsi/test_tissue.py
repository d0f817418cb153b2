"""Tissue mask: blank glass gives no tissue; mask files and ROIs; mask arithmetic."""

import cv2
import numpy as np
import pytest

from simgan_histo import config as config_lib
from simgan_histo.wsi import pyramid, reader, tissue

CONFIG = config_lib.WsiConfig()


def _glass(shape, seed=0):
    """White glass with a little sensor noise and uneven illumination."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(0, 2.0, size=shape + (3,))
    ramp = np.linspace(-6, 0, shape[1])[None, :, None]
    return np.clip(248 + noise + ramp, 0, 255).astype(np.uint8)


def _open(tmp_path, rgb, mpp=0.5):
    path = pyramid.write_pyramid(tmp_path / "s.svs", rgb, mpp, quality=80)
    return reader.open_slide(path)


def test_blank_slide_has_no_tissue(tmp_path):
    with _open(tmp_path, _glass((1200, 2000))) as slide:
        mask = tissue.slide_tissue(slide, slide.mpp, CONFIG)
    assert mask.mask.size > 0 and not mask.mask.any()


def test_blank_half_stays_blank(tmp_path):
    rgb = _glass((1200, 2000))
    rgb[100:1100, 1000:1900] = (225, 160, 200)  # pale eosin tissue, right half
    rgb[400:700, 1200:1500] = (120, 70, 150)  # a dense, darker patch inside it
    with _open(tmp_path, rgb) as slide:
        mask = tissue.slide_tissue(slide, slide.mpp, CONFIG)
    # Level-0 px at 0.5 µm/px: tissue x 1000..1900; margin 32 µm = 64 px.
    x = np.arange(0, 2000, 10)
    inside = mask.contains(x, np.full_like(x, 600))
    assert inside[(x >= 1000) & (x < 1900)].all()  # pale tissue kept (Otsu clamped)
    assert not inside[x < 1000 - 64 - 16].any() and not inside[x >= 1900 + 64 + 16].any()
    assert mask.area_um2(0.5) == pytest.approx((900 + 128) * (1000 + 128) * 0.25, rel=0.1)


def test_mask_file_is_matched_by_name_and_scaled(tmp_path):
    masks = tmp_path / "masks"
    masks.mkdir()
    user_mask = np.zeros((60, 100), np.uint8)
    user_mask[10:30, 50:90] = 255
    cv2.imwrite(str(masks / "s.png"), user_mask)
    with _open(tmp_path, _glass((1200, 2000))) as slide:
        mask = tissue.slide_tissue(slide, slide.mpp, CONFIG, mask_dir=masks)
    assert mask.source.startswith("file:") and mask.downsample == (20.0, 20.0)
    assert mask.contains([1000, 999, 1790], [200, 200, 599]).tolist() == [True, False, True]
    assert mask.fraction((1000, 200, 800, 400)) == 1.0
    assert mask.fraction((0, 0, 2000, 1200)) == pytest.approx(800 / 6000)


def test_mask_file_errors(tmp_path):
    masks = tmp_path / "masks"
    masks.mkdir()
    with pytest.raises(FileNotFoundError, match="s.png"):
        tissue.find_mask_file(masks, tmp_path / "s.svs")
    cv2.imwrite(str(masks / "s.png"), np.zeros((100, 100), np.uint8))
    with pytest.raises(ValueError, match="aspect ratio"):
        tissue.load_mask_file(masks / "s.png", (2000, 1200))


def test_roi_restricts_the_mask(tmp_path):
    rgb = _glass((1200, 2000))
    rgb[100:1100, 100:1900] = (200, 140, 190)
    with _open(tmp_path, rgb) as slide:
        mask = tissue.slide_tissue(slide, slide.mpp, CONFIG, roi=(400, 400, 320, 160))
    assert mask.source == "otsu+roi"
    rows, cols = np.nonzero(mask.mask)
    assert (cols.min() * 16, rows.min() * 16) == (400, 400)
    assert ((cols.max() + 1) * 16, (rows.max() + 1) * 16) == (720, 560)


def test_thumbnail_strips_equal_one_read(tmp_path):
    rgb = _glass((1200, 2000))
    rgb[::7] = 30
    with _open(tmp_path, rgb) as slide:
        strips = tissue.thumbnail(slide, 3.0, strip_px=100)
        whole = slide.read(0, 0, 2000, 1200, 3.0)
    assert strips.shape == whole.shape == (400, 667, 3)
    assert np.abs(strips.astype(int) - whole).max() <= 1
