"""Real nuclear texture: which components become crops, and where a crop is pasted."""

import cv2
import numpy as np

from simgan_histo.synthesis import compose
from simgan_histo.synthesis import real_texture
from simgan_histo.synthesis import tissue
from tests.synthesis.conftest import small_config


def _disc(mask, centre, radius, value=1):
    cv2.circle(mask, centre, radius, value, -1)


def test_crops_keep_single_convex_nuclei_in_the_area_range():
    mask = np.zeros((120, 200), np.uint8)
    _disc(mask, (30, 30), 10)  # kept: a disc of ≈ 317 px
    _disc(mask, (100, 30), 3)  # too small (29 px)
    _disc(mask, (160, 30), 12)  # two touching discs: a clump, solidity 0.83
    _disc(mask, (160, 54), 12)
    _disc(mask, (40, 90), 25)  # too large (≈ 1,960 px)
    rgb = np.full((120, 200, 3), 230, np.uint8)
    rgb[mask > 0] = (60, 20, 120)
    rgb[30, 30] = (10, 10, 10)  # a nucleolus, to check the crop is the real pixels
    crops = real_texture.nucleus_crops(rgb, mask, min_area=60, max_area=1200)
    assert len(crops) == 1
    crop = crops[0]
    assert crop.shape == (21, 21, 3)
    # Filled outward: the box's corners (outside the disc) take the nuclear colour too.
    np.testing.assert_array_equal(crop[0, 0], (60, 20, 120))
    np.testing.assert_array_equal(crop[10, 10], (10, 10, 10))
    assert not (crop == 230).all(axis=-1).any()


def test_paste_covers_each_nucleus_and_its_halo_but_not_its_neighbours():
    size = 40
    labels = np.zeros((size, size), np.uint16)
    labels[5:15, 5:15] = 1
    labels[5:15, 15:25] = 2  # touches nucleus 1
    boxes = np.array([[5, 5, 15, 15], [15, 5, 25, 15]])
    crops = [np.full((4, 4, 3), 50, np.uint8), np.full((4, 4, 3), 150, np.uint8)]
    nuclear = np.full((3, size, size), -1.0, np.float32)
    rng = np.random.default_rng(0)
    picks = np.random.default_rng(0).integers(0, 2, 2)  # what paste draws first
    real_texture.paste(rng, nuclear, labels, boxes, crops, colour_jitter=0.0, halo_px=2)
    first, second = (float(crops[p][0, 0, 0]) for p in picks)
    plane = nuclear[0]
    np.testing.assert_allclose(plane[5:15, 5:15], first)
    np.testing.assert_allclose(plane[5:15, 15:25], second)
    assert plane[3, 5] == first and plane[16, 20] == second  # halos, 2 px
    assert plane[2, 5] == -1.0 and plane[30, 30] == -1.0  # beyond the halo: untouched


def test_real_texture_patches_are_deterministic_and_differ_only_inside_nuclei(tissue_dir):
    rgb = cv2.cvtColor(cv2.imread(str(sorted(tissue_dir.glob("*.png"))[0])), cv2.COLOR_BGR2RGB)
    synthetic = small_config()
    real = small_config(nuclear_texture_source="real")
    tile = tissue.prepare_tile(rgb, real, "tile")
    assert tile.nucleus_crops and all(c.dtype == np.uint8 for c in tile.nucleus_crops)
    one = compose.synthesize_batch([tile], real, 3, [0, 1])
    again = compose.synthesize_batch([tile], real, 3, [1])
    np.testing.assert_array_equal(one["image"][1], again["image"][0])
    plain = compose.synthesize_batch([tissue.prepare_tile(rgb, synthetic, "tile")],
                                     synthetic, 3, [0])
    # The texture changes what the nuclei look like, not where they are.
    np.testing.assert_array_equal(one["labels"][0], plain["labels"][0])
    nuclei = one["labels"][0] > 0
    assert nuclei.any()
    changed = (one["image"][0] != plain["image"][0]).any(axis=-1)
    assert changed[nuclei].mean() > 0.5
