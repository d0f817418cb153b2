"""Batches, real pairs, patch files: schema, determinism, atomic writes, previews."""

import cv2
import numpy as np
import pytest

from simgan_histo import patch_file
from simgan_histo import synthesis
from simgan_histo.synthesis import compose
from simgan_histo.synthesis import labels
from tests.synthesis.conftest import small_config


def test_batch_schema(source):
    batch = synthesis.make_batch(source, 0, range(6))
    size = source.config.patch_size
    assert batch["image"].shape == (6, size, size, 3) and batch["image"].dtype == np.uint8
    assert batch["reference"].shape == (6, size, size, 3)
    assert batch["mask"].shape == (6, size, size) and batch["mask"].dtype == np.uint8
    assert batch["labels"].dtype == np.uint16 and batch["source"].dtype == np.int32
    assert set(np.unique(batch["source"])) <= set(range(source.num_tiles))
    assert batch["mask"].max() <= 7
    for mask, instance in zip(batch["mask"], batch["labels"]):
        np.testing.assert_array_equal(mask, labels.labels_to_mask(instance))
        ids = np.unique(instance)
        np.testing.assert_array_equal(ids, np.arange(len(ids)))  # 0..K, no gaps
    assert sum(int(instance.max()) for instance in batch["labels"]) > 6  # nuclei were placed


def test_patch_is_a_function_of_seed_and_index(source):
    alone = synthesis.make_batch(source, 3, [5])
    among = synthesis.make_batch(source, 3, [9, 5, 2])
    for field in ("image", "reference", "mask", "labels", "source"):
        np.testing.assert_array_equal(alone[field][0], among[field][1])
    other = synthesis.make_batch(source, 4, [5])
    assert not np.array_equal(alone["image"], other["image"])


def test_classical_count_source_places_nuclei_where_the_tissue_has_them(tissue_dir):
    config = small_config(count_source="classical")
    classical = synthesis.TissueSource.from_paths(tissue_dir, config, mpp=0.25)
    batch = synthesis.make_batch(classical, 0, range(160))
    per_tile = {tile.name: np.mean([int(ids.max()) for ids in
                                    batch["labels"][batch["source"] == index]])
                for index, tile in enumerate(classical.tiles)}
    # Real labels: HE-7129 has 63 nuclei per 200², A7-A13E 13 (BENCHMARKS.md).
    dense, sparse = (per_tile[f"{name}.png"] for name in ("TCGA-HE-7129-01Z-00-DX1",
                                                          "TCGA-A7-A13E-01Z-00-DX1"))
    assert dense > 1.5 * sparse > 0


def test_iterate_batches_walks_consecutive_indices(source):
    stream = synthesis.iterate_batches(source, 1, batch_size=2, start=4)
    first, second = next(stream), next(stream)
    expected = synthesis.make_batch(source, 1, range(4, 8))
    np.testing.assert_array_equal(np.concatenate([first["image"], second["image"]]),
                                  expected["image"])


def _find(tile_rgb, crop):
    score = cv2.matchTemplate(tile_rgb, crop, cv2.TM_SQDIFF)
    _, _, (x, y), _ = cv2.minMaxLoc(score)
    size = crop.shape[0]
    np.testing.assert_array_equal(tile_rgb[y:y + size, x:x + size], crop)
    return x, y


def test_real_pairs_are_disjoint_crops_of_one_tile(source):
    pairs = synthesis.make_real_pairs(source, 0, range(8))
    size = source.config.patch_size
    assert pairs["image"].shape == (8, size, size, 3)
    for image, reference, index in zip(pairs["image"], pairs["reference"], pairs["source"]):
        tile = source.tiles[index].rgb
        (ax, ay), (bx, by) = _find(tile, image), _find(tile, reference)
        assert abs(ax - bx) >= size or abs(ay - by) >= size


def test_reference_is_disjoint_from_the_patch_region():
    for seed in range(200):
        rng = np.random.default_rng(seed)
        (px, py), (rx, ry) = compose.patch_positions(rng, (150, 300), 64, 8)
        assert 8 <= px <= 300 - 64 - 8 and 8 <= py <= 150 - 64 - 8
        assert 0 <= rx <= 300 - 64 and 0 <= ry <= 150 - 64
        assert abs(px - rx) >= 64 or abs(py - ry) >= 64


def test_tile_too_small_for_two_crops_is_an_error():
    with pytest.raises(ValueError, match="too small"):
        compose.patch_positions(np.random.default_rng(0), (100, 100), 64, 8)


@pytest.mark.slow
def test_file_is_identical_for_one_and_two_workers(source, tmp_path):
    summaries = [synthesis.synthesize_to_file(source, tmp_path / f"w{workers}.h5", 40, seed=2,
                                              workers=workers, config_json="{}",
                                              progress=False)
                 for workers in (1, 2)]
    assert [s["made"] for s in summaries] == [40, 40]
    with patch_file.PatchReader(tmp_path / "w1.h5") as one, \
            patch_file.PatchReader(tmp_path / "w2.h5") as two:
        assert len(one) == len(two) == 40
        for field in patch_file.FIELDS:
            np.testing.assert_array_equal(one.read(range(40), [field])[field],
                                          two.read(range(40), [field])[field])
        first = one.read([0, 39])
    expected = synthesis.make_batch(source, 2, [0, 39])
    np.testing.assert_array_equal(first["image"], expected["image"])
    assert (first["weight"] == 1.0).all() and (first["step"] == -1).all()


def test_shortfall_raises_and_leaves_no_file(source, tmp_path):
    broken = synthesis.TissueSource(source.tiles[:1], source.config)
    broken.tiles[0] = _shrunk(broken.tiles[0])
    out = tmp_path / "broken.h5"
    with pytest.raises(RuntimeError, match=r"made 0 of 10 patches \(shortfall 10\)"):
        synthesis.synthesize_to_file(broken, out, 10, progress=False)
    assert list(tmp_path.iterdir()) == []


def _shrunk(tile):
    """A copy of `tile` cut too small for a patch and its reference (patches then fail)."""
    import dataclasses
    return dataclasses.replace(tile, rgb=tile.rgb[:100, :100])


def test_preview_grid(source, tmp_path):
    batch = synthesis.make_batch(source, 0, range(3))
    path = synthesis.write_preview(tmp_path / "grid.png", batch)
    grid = cv2.imread(str(path))
    size = source.config.patch_size
    assert grid.shape == (3 * size + 2 * 4, 3 * size + 2 * 4, 3)
    assert list(tmp_path.iterdir()) == [path]
