"""Tiling: cores partition the region, read windows are equal, ownership is unique."""

import numpy as np
import pytest

from simgan_histo.wsi import tiling


def test_cover_hand_computed():
    # tile 100, overlap 20, context 5 -> margin 15, core 70; 150 x 200 -> 3 rows x 3 cols.
    tiles = tiling.cover((150, 200), tile_size=100, overlap=20, context=5)
    assert [(t.row, t.col) for t in tiles] == [(r, c) for r in range(3) for c in range(3)]
    assert tiles[0].write == (0, 0, 70, 70) and tiles[0].read == (-15, -15, 100, 100)
    assert tiles[2].write == (140, 0, 60, 70) and tiles[2].read == (125, -15, 100, 100)
    assert tiles[8].write == (140, 140, 60, 10)
    assert all(t.read[2:] == (100, 100) for t in tiles)


def test_cover_and_reassemble_is_identity():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5000, size=(517, 389)).astype(np.uint16)
    out = np.zeros_like(labels)
    owners = np.zeros(labels.shape, np.int32)
    padded = np.pad(labels, 200)  # reads beyond the border see padding, as a slide reads white
    for tile in tiling.cover(labels.shape, tile_size=128, overlap=32, context=8):
        x, y, width, height = tile.read
        window = padded[y + 200:y + 200 + height, x + 200:x + 200 + width]
        wx, wy, ww, wh = tile.write
        out[wy:wy + wh, wx:wx + ww] = window[wy - y:wy - y + wh, wx - x:wx - x + ww]
        owners[wy:wy + wh, wx:wx + ww] += 1
    np.testing.assert_array_equal(out, labels)
    assert (owners == 1).all()


def test_every_point_has_exactly_one_owner_including_outside_the_region():
    tiles = tiling.cover((300, 260), tile_size=96, overlap=16)
    rng = np.random.default_rng(1)
    points = np.concatenate([rng.uniform(-50, 350, size=(2000, 2)),
                             # exactly on core edges, where half-open intervals matter
                             np.array([[80.0, 80.0], [0.0, 0.0], [160.0, 240.0], [260, 300]])])
    counts = sum(t.is_responsible(points[:, 0], points[:, 1]).astype(int) for t in tiles)
    assert (counts == 1).all()
    assert tiles[0].is_responsible(79.999, 0.0) and not tiles[0].is_responsible(80.0, 0.0)
    assert tiles[1].is_responsible(80.0, 0.0)


def test_nucleus_smaller_than_overlap_lies_in_its_owners_read_window():
    tiles = tiling.cover((400, 400), tile_size=100, overlap=40, context=4)
    margin = tiling.margin_px(40, 4)
    radius = 40 // 2 - 1  # just inside the assumption
    for cx in np.linspace(0, 399.9, 97):
        owner = [t for t in tiles if t.is_responsible(cx, 155.5)]
        assert len(owner) == 1
        x, y, width, height = owner[0].read
        assert x + 4 <= cx - radius and cx + radius <= x + width - 4
    assert margin == 24


@pytest.mark.parametrize("kwargs", [dict(tile_size=48, overlap=48), dict(tile_size=64, overlap=-1),
                                    dict(tile_size=64, overlap=8, balanced=True, stride=0)])
def test_cover_rejects_impossible_tilings(kwargs):
    with pytest.raises(ValueError):
        tiling.cover((100, 100), **kwargs)


def test_balanced_cover_hand_computed():
    # tile 100, overlap 20, context 5 -> margin 15, max core 70; 150 x 200 -> 3 x 3 tiles.
    # Rows: ceil(150 / 3) = 50 -> read 80 (a multiple of 8) -> core 50; columns: ceil(200 / 3)
    # = 67 -> read 97 -> 104 -> core 74 > 70 is clamped: read 100, core 70 (as unbalanced).
    tiles = tiling.cover((150, 200), tile_size=100, overlap=20, context=5, balanced=True,
                         stride=8)
    assert len(tiles) == 9
    assert tiles[0].write == (0, 0, 70, 50) and tiles[0].read == (-15, -15, 100, 80)
    assert tiles[8].write == (140, 100, 60, 50) and tiles[8].read == (125, 85, 100, 80)
    assert all(t.read[2:] == (100, 80) for t in tiles)
    # 4096² in 2048-px tiles: 3 x 3 either way; balanced windows of 1496 (= 187 · 8).
    big = tiling.cover((4096, 4096), 2048, 128, balanced=True, stride=8)
    assert len(big) == 9 and big[0].read[2:] == (1496, 1496)
    assert big[-1].write == (2 * 1368, 2 * 1368, 4096 - 2 * 1368, 4096 - 2 * 1368)


@pytest.mark.parametrize("shape", [(517, 389), (128, 1000), (97, 97)])
def test_balanced_cover_and_reassemble_is_identity(shape):
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 5000, size=shape).astype(np.uint16)
    out = np.zeros_like(labels)
    owners = np.zeros(labels.shape, np.int32)
    padded = np.pad(labels, 200)
    tiles = tiling.cover(labels.shape, tile_size=128, overlap=32, context=8, balanced=True,
                         stride=16)
    assert len({t.read[2:] for t in tiles}) == 1 and tiles[0].read[2] % 16 == 0
    assert len(tiles) == len(tiling.cover(labels.shape, tile_size=128, overlap=32, context=8))
    for tile in tiles:
        x, y, width, height = tile.read
        window = padded[y + 200:y + 200 + height, x + 200:x + 200 + width]
        wx, wy, ww, wh = tile.write
        assert ww > 0 and wh > 0
        out[wy:wy + wh, wx:wx + ww] = window[wy - y:wy - y + wh, wx - x:wx - x + ww]
        owners[wy:wy + wh, wx:wx + ww] += 1
        points = np.array([[wx, wy], [wx + ww - 1e-6, wy + wh - 1e-6]])
        assert tile.is_responsible(points[:, 0], points[:, 1]).all()
    np.testing.assert_array_equal(out, labels)
    assert (owners == 1).all()
