"""One slide end to end with the oracle model: seams, MPP, outputs, errors."""

import csv
import dataclasses
import json
import pickle
import re
import uuid

import cv2
import numpy as np
import pytest
import shapely.geometry

from simgan_histo import config as config_lib, stain
from simgan_histo.wsi import reader, segment, shards
from simgan_histo.wsi import report as report_lib
from tests.wsi import helpers

CONFIG = config_lib.WsiConfig(tile_size_px=256, overlap_px=48, stain_norm="none",
                              batch_size=3)


def _full_mask(folder, name, shape):
    folder.mkdir(exist_ok=True)
    cv2.imwrite(str(folder / f"{name}.png"), np.full(shape, 255, np.uint8))
    return folder


def _pairs(truth, found):
    """Distinct (true id, found id) pairs over pixels where either is labelled."""
    either = (truth > 0) | (found > 0)
    return np.unique(np.stack([truth[either], found[either]], 1), axis=0)


def _seam_discs():
    """Discs (x, y, r px) centred on, just before and just after the core borders (208, 416)."""
    discs = []
    for border in (208, 416):
        # Elsewhere along the seam, away from the other seams (208 ± 30, 416 ± 30).
        for offset, y, x in zip((-9.7, -0.5, 0.0, 0.5, 9.3), (40, 120, 290, 500, 570),
                                (60, 140, 300, 510, 580)):
            discs.append((border + offset, y, 10.0))  # straddles a vertical seam
            discs.append((x, border + offset, 10.0))  # straddles a horizontal one
        discs.append((border + 0.5, border - 0.5, 10.0))  # a corner: four tiles meet
    centres = np.array([(x, y) for x, y, _ in discs])
    gaps = np.sqrt(((centres[:, None] - centres[None]) ** 2).sum(-1)) + np.eye(len(discs)) * 99
    assert gaps.min() > 24  # well apart: one component each
    return discs


def _crashing_oracle_model(message: str, crash_at: int = 3):
    """The oracle model, raising RuntimeError(message) on its `crash_at`-th batch."""
    calls = []

    def failing(batch):
        calls.append(len(batch))
        if len(calls) == crash_at:
            raise RuntimeError(message)
        return helpers.oracle_maps(batch)

    model = helpers.oracle_model()
    model.predict_maps = failing
    return model


def test_nuclei_straddling_tile_borders_are_found_exactly_once(tmp_path):
    discs = _seam_discs()
    rgb, truth = helpers.draw_discs((600, 620), discs, tissue_box=(0, 0, 620, 600))
    path = tmp_path / "seams.tif"
    from simgan_histo.wsi import pyramid
    pyramid.write_pyramid(path, rgb, 0.25, compression="deflate")
    masks = _full_mask(tmp_path / "masks", "seams", (60, 62))
    report = segment.segment_slide(path, helpers.oracle_model(), tmp_path / "out", CONFIG,
                                   mask_dir=masks, progress=False)
    assert report["processing"]["region_origin_px"] == [0, 0]
    assert report["tiles"]["processed"] == 9  # 3 × 3 cores of 208 px
    features = helpers.load_features(tmp_path / "out" / "seams" / "seams.geojson")
    assert report["nuclei"] == len(features) == len(discs)
    assert report["counts"]["nuclei_touching_read_edge"] == 0
    found = helpers.rasterize_features(features, truth.shape)
    pairs = _pairs(truth, found)
    # A bijection and identical pixels: none cut, none twice, none moved.
    assert len(pairs) == len(discs) and (pairs > 0).all()
    np.testing.assert_array_equal(found > 0, truth > 0)


@pytest.mark.parametrize("mpp", [0.25, 0.5, 0.22])
def test_slide_mpp_sets_the_resampling_and_geometry_is_kept(tmp_path, mpp):
    rng = np.random.default_rng(3)
    centres = [(x + rng.uniform(-3, 3), y + rng.uniform(-3, 3))
               for x in np.arange(30, 270, 16.0) for y in np.arange(30, 170, 16.0)]
    discs_um = [(x, y, 3.0) for x, y in centres]
    path, truth, discs_px = helpers.disc_slide(tmp_path / f"s{mpp}.svs", mpp, discs_um,
                                               (300, 200), tissue_um=(15, 15, 270, 170))
    config = config_lib.WsiConfig(tile_size_px=256, overlap_px=64, stain_norm="none")
    report = segment.segment_slide(path, helpers.oracle_model(0.25), tmp_path / "out",
                                   config, progress=False)
    assert report["processing"]["downsample"] == pytest.approx(0.25 / mpp)
    assert report["slide"]["mpp"] == pytest.approx(mpp)
    name = path.stem
    with open(tmp_path / "out" / name / f"{name}_nuclei.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(discs_um)
    found = np.array([[float(r["centroid_x"]), float(r["centroid_y"])] for r in rows])
    expected = np.array([[x, y] for x, y, _ in discs_px])
    distance = np.sqrt(((found[:, None] - expected[None]) ** 2).sum(-1))
    assert distance.min(axis=1).max() * mpp < 0.1  # µm: every nucleus where it was drawn
    areas = np.array([float(r["area_um2"]) for r in rows])
    assert np.abs(areas / (np.pi * 9.0) - 1).max() < 0.12
    assert abs(areas.mean() / (np.pi * 9.0) - 1) < 0.03


def test_missing_mpp_is_a_clear_error_and_the_override_works(tmp_path):
    path, _, _ = helpers.disc_slide(tmp_path / "nompp.tif", 0.5, [(90, 70, 3.0)], (200, 160),
                                    tissue_um=(20, 20, 150, 120), record_mpp=False)
    with pytest.raises(reader.MissingMppError, match="--mpp"):
        segment.segment_slide(path, helpers.oracle_model(), tmp_path / "out", CONFIG,
                              progress=False)
    assert not (tmp_path / "out" / "nompp").exists()
    config = config_lib.WsiConfig(tile_size_px=256, overlap_px=48, stain_norm="none",
                                  mpp=0.5)
    report = segment.segment_slide(path, helpers.oracle_model(), tmp_path / "out", config,
                                   progress=False)
    assert report["slide"]["mpp_source"] == "override" and report["nuclei"] == 1
    assert report["processing"]["downsample"] == 0.5


def _spiky_slide(tmp_path):
    """Nuclei with one-pixel spurs and necks: contours that need repair to be valid."""
    rng = np.random.default_rng(7)
    rgb = np.full((700, 900, 3), 255, np.uint8)
    rgb[20:680, 20:880] = helpers.TISSUE
    for y in range(50, 660, 45):
        for x in range(50, 860, 45):
            centre = (int(x + rng.integers(-4, 5)), int(y + rng.integers(-4, 5)))
            cv2.circle(rgb, centre, int(rng.integers(5, 11)), helpers.NUCLEUS, -1)
            end = (centre[0] + int(rng.integers(-16, 17)), centre[1] + int(rng.integers(-16, 17)))
            cv2.line(rgb, centre, end, helpers.NUCLEUS, 1)
    from simgan_histo.wsi import pyramid
    return pyramid.write_pyramid(tmp_path / "spiky.tif", rgb, 0.25, compression="deflate")


def test_geojson_is_valid_qupath_detections_in_level0(tmp_path):
    path = _spiky_slide(tmp_path)
    report = segment.segment_slide(path, helpers.oracle_model(), tmp_path / "out", CONFIG,
                                   progress=False)
    text = (tmp_path / "out" / "spiky" / "spiky.geojson").read_text()
    features = json.loads(text)["features"]  # strict JSON: no NaN
    assert len(features) == report["nuclei"] > 150
    assert report["counts"]["polygons_repaired"] > 0  # the repair path ran
    for feature in features:
        assert feature["type"] == "Feature" and "objectType" not in feature
        properties = feature["properties"]
        assert properties["objectType"] == "detection"
        assert properties["classification"]["name"] == "Nucleus"
        assert 0 < properties["measurements"]["Nucleus probability mean"] <= 1
        assert uuid.UUID(feature["id"]).version == 5
        ring = feature["geometry"]["coordinates"][0]
        assert feature["geometry"]["type"] == "Polygon" and ring[0] == ring[-1]
        polygon = shapely.geometry.shape(feature["geometry"])
        assert polygon.is_valid and polygon.area > 0
        xs, ys = np.asarray(ring).T
        assert xs.min() >= 20 and xs.max() <= 880 and ys.min() >= 20 and ys.max() <= 680
    assert len({f["id"] for f in features}) == len(features)
    # Sorted: tiles row-major, then centroid y, x inside a tile; and reproducible.
    segment.segment_slide(path, helpers.oracle_model(), tmp_path / "again", CONFIG,
                          progress=False)
    assert (tmp_path / "again" / "spiky" / "spiky.geojson").read_text() == text


def test_tcga_csvs_and_morphometry(tmp_path):
    discs_um = [(x, y, 2.5) for x in np.arange(20, 380, 23.0) for y in np.arange(20, 280, 23.0)]
    path, _, _ = helpers.disc_slide(tmp_path / "tcga.svs", 0.5, discs_um, (400, 300),
                                    tissue_um=(10, 10, 380, 280))
    config = config_lib.WsiConfig(tile_size_px=256, overlap_px=48, stain_norm="none",
                                  csv_tile_px=300)
    report = segment.segment_slide(path, helpers.oracle_model(0.25), tmp_path / "out", config,
                                   progress=False)
    folder = tmp_path / "out" / "tcga" / "tcga_tcga"
    names = sorted(p.name for p in folder.glob("*-features.csv"))
    # 800 x 600 level-0 px in 300-px tiles: 3 x 2 tiles, edge tiles clipped; scale = 2.
    assert names == sorted(f"{x}_{y}_{min(300, 800 - x)}_{min(300, 600 - y)}_0.5_2-features.csv"
                           for x in (0, 300, 600) for y in (0, 300))
    polygon_format = re.compile(r"^\[(-?\d+\.\d:)+-?\d+\.\d\]$")
    total = 0
    for name in names:
        x0, y0, width, height = (int(v) for v in name.split("_")[:4])
        with open(folder / name, newline="") as f:
            rows = list(csv.reader(f))
        assert rows[0] == ["AreaInPixels", "PhysicalSize", "Polygon"]
        for area, physical, polygon in rows[1:]:
            assert polygon_format.match(polygon)
            assert int(area) == int(int(physical) / 4)
            points = np.array(polygon[1:-1].split(":"), float).reshape(-1, 2)
            centre = points.mean(0)
            assert x0 - 1 <= centre[0] < x0 + width and y0 - 1 <= centre[1] < y0 + height
        total += len(rows) - 1
        meta = json.loads((folder / name.replace("-features.csv", "-algmeta.json")).read_text())
        assert (meta["tile_minx"], meta["tile_miny"], meta["mpp"]) == (x0, y0, 0.5)
        assert meta["input_type"] == "wsi" and meta["case_id"] == "tcga"
    assert total == report["nuclei"] == len(discs_um)
    with open(tmp_path / "out" / "tcga" / "tcga_nuclei.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == total and float(table[0]["area_um2"]) == pytest.approx(
        np.pi * 2.5 ** 2, rel=0.15)


def test_outputs_are_atomic_when_a_run_fails(tmp_path):
    discs_um = [(x, y, 3.0) for x in np.arange(20, 280, 20.0) for y in np.arange(20, 180, 20.0)]
    path, _, _ = helpers.disc_slide(tmp_path / "atomic.svs", 0.25, discs_um, (300, 200),
                                    tissue_um=(10, 10, 280, 180))
    segment.segment_slide(path, helpers.oracle_model(), tmp_path / "out", CONFIG,
                          progress=False)
    folder = tmp_path / "out" / "atomic"
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    model = _crashing_oracle_model("model crashed")
    with pytest.raises(RuntimeError, match="model crashed"):
        segment.segment_slide(path, model, tmp_path / "out", CONFIG, progress=False)
    after = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    assert after == before  # the earlier results are untouched, nothing half-written
    assert not [p for p in folder.rglob(".*")]  # no temporary files left behind
    assert len(list((folder / "atomic_tcga").glob("*.csv"))) == 1


def test_corrupt_slide_is_a_clear_error(tmp_path):
    path = tmp_path / "broken.svs"
    path.write_bytes(b"II*\x00" + b"\x00" * 64)
    with pytest.raises(reader.SlideReadError, match="broken.svs"):
        segment.segment_slide(path, helpers.oracle_model(), tmp_path / "out", CONFIG,
                              progress=False)


def test_stain_statistics_come_from_the_whole_slide(tmp_path):
    """A pale, nucleus-free region stays nucleus-free: per-tile statistics would invent some."""
    discs = [(x, y, 12.0) for x in np.arange(80, 560, 60.0) for y in np.arange(80, 720, 60.0)]
    rgb, _ = helpers.draw_discs((800, 1200), discs, tissue_box=(40, 40, 1120, 720))
    noise = np.random.default_rng(0).normal(0, 2.0, rgb.shape)  # sensor noise
    rgb = np.clip(rgb + noise, 0, 255).astype(np.uint8)
    from simgan_histo.wsi import pyramid
    path = pyramid.write_pyramid(tmp_path / "stain.svs", rgb, 0.25, compression="deflate")
    mean, std = stain.lab_stats(rgb[40:760, 40:1160])
    target = (mean + np.array([-2.0, 1.5, 1.0]), std * 1.05)  # another lab's slightly different H&E
    model = helpers.oracle_model(stain_target=target)
    config = config_lib.WsiConfig(tile_size_px=256, overlap_px=48, stain_norm="reinhard")
    report = segment.segment_slide(path, model, tmp_path / "out", config, progress=False)
    assert report["nuclei"] == len(discs)
    assert report["stain"]["target"] == stain.stats_to_json(target)
    pale = rgb[100:356, 700:956]  # tissue without nuclei: one tile's worth
    per_tile = stain.reinhard(pale, stain.lab_stats(pale), target)
    invented = helpers.components(*helpers.oracle_maps(per_tile[None]))[0]
    assert invented.max() > 0  # the failure mode the once-per-slide statistics avoid


def test_slide_stain_statistics_leave_out_unstained_pixels(tmp_path):
    """Grey, unstained pixels (dust, pen, folds' shadows) are not tissue for the statistics,
    as they were not when the model's target was measured."""
    pink = (200, 120, 180)
    rgb = np.full((800, 1200, 3), 250, np.uint8)
    rgb[40:760, 40:1160] = pink
    rgb[40:760, 500:700] = 190  # dark enough to pass as stained by optical density alone
    from simgan_histo.wsi import pyramid
    path = pyramid.write_pyramid(tmp_path / "grey.svs", rgb, 0.25, compression="deflate")
    target = stain.lab_stats(np.full((4, 4, 3), (150, 80, 160), np.uint8))
    config = config_lib.WsiConfig(tile_size_px=256, overlap_px=48, stain_norm="reinhard")
    report = segment.segment_slide(path, helpers.oracle_model(stain_target=target),
                                   tmp_path / "out", config, progress=False)
    expected = stain.lab_stats(np.full((4, 4, 3), pink, np.uint8))[0]
    np.testing.assert_allclose(report["stain"]["slide"]["lab_mean"], expected, atol=0.5)


def test_blank_slide_gives_empty_but_valid_outputs(tmp_path):
    from simgan_histo.wsi import pyramid
    path = pyramid.write_pyramid(tmp_path / "blank.svs", np.full((600, 800, 3), 250, np.uint8),
                                 0.25)
    report = segment.segment_slide(path, helpers.oracle_model(), tmp_path / "out", CONFIG,
                                   progress=False)
    assert report["nuclei"] == 0 and report["tiles"]["processed"] == 0
    assert report["tissue_mm2"] == 0.0
    assert report["warnings"][0].startswith("no tissue found")
    assert helpers.load_features(tmp_path / "out" / "blank" / "blank.geojson") == []
    assert (tmp_path / "out" / "blank" / "blank_nuclei.csv").read_text().count("\n") == 1


def test_roi_keeps_only_its_nuclei(tmp_path):
    discs_um = [(x, y, 3.0) for x in np.arange(20, 280, 20.0) for y in np.arange(20, 180, 20.0)]
    path, _, discs_px = helpers.disc_slide(tmp_path / "roi.svs", 0.25, discs_um, (300, 200),
                                           tissue_um=(10, 10, 280, 180))
    roi = (200, 120, 400, 300)  # level-0 px: x 200..600, y 120..420
    report = segment.segment_slide(path, helpers.oracle_model(), tmp_path / "out", CONFIG,
                                   roi=roi, progress=False)
    inside = [(x, y) for x, y, _ in discs_px if 200 <= x < 600 and 120 <= y < 420]
    assert report["nuclei"] == len(inside) > 0
    assert report["tissue"]["source"] == "otsu+roi"


def _grid_slide(tmp_path, name="grid"):
    discs_um = [(x, y, 3.0) for x in np.arange(20, 280, 20.0) for y in np.arange(20, 180, 20.0)]
    path, _, _ = helpers.disc_slide(tmp_path / f"{name}.svs", 0.25, discs_um, (300, 200),
                                    tissue_um=(10, 10, 280, 180))
    return path, len(discs_um)


def _outputs(folder):
    """Every output file's bytes, minus the report and the algmeta files (they hold times)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.name.endswith(("_report.json", "-algmeta.json"))}


def test_a_failed_run_resumes_from_its_shards_with_identical_outputs(tmp_path):
    path, count = _grid_slide(tmp_path)
    reference = segment.segment_slide(path, helpers.oracle_model(), tmp_path / "ref", CONFIG,
                                      progress=False)
    # 1200 x 800 px of tissue (mask dilated to the slide's edges) in 208-px cores: 6 x 4 tiles,
    # in shards of 3 (the batch size).
    assert reference["tiles"]["processed"] == 24
    assert reference["shards"] == {"total": 8, "reused": 0}
    model = _crashing_oracle_model("killed")
    with pytest.raises(RuntimeError, match="killed"):
        segment.segment_slide(path, model, tmp_path / "out", CONFIG, progress=False)
    shard_dir = tmp_path / "out" / "grid" / "grid_shards"
    assert sorted(p.name for p in shard_dir.iterdir()) == [
        "manifest.json", "shard_000000.npz", "shard_000001.npz"]
    assert not (tmp_path / "out" / "grid" / "grid.geojson").exists()
    report = segment.segment_slide(path, helpers.oracle_model(), tmp_path / "out", CONFIG,
                                   progress=False)
    assert report["shards"] == {"total": 8, "reused": 2}
    assert report["nuclei"] == reference["nuclei"] == count
    assert report["run_key"] == reference["run_key"]
    assert _outputs(tmp_path / "out" / "grid") == _outputs(tmp_path / "ref" / "grid")
    assert not shard_dir.exists()  # removed once the report is written


def test_shards_of_another_run_key_are_discarded(tmp_path):
    path, _ = _grid_slide(tmp_path)
    store = shards.ShardStore(tmp_path / "s", "key-a", 3)
    assert store.open() == 0
    store.write(1, [])
    assert shards.ShardStore(tmp_path / "s", "key-a", 3).open() == 1
    assert shards.ShardStore(tmp_path / "s", "key-b", 3).open() == 0  # another model/config
    assert not store.path(1).exists()
    model = helpers.oracle_model()
    key = shards.run_key(path, shards.model_identity(model), CONFIG)
    assert key == shards.run_key(path, shards.model_identity(model),
                                 dataclasses.replace(CONFIG, engine="dask"))
    for changed in (dataclasses.replace(CONFIG, overlap_px=40),
                    dataclasses.replace(CONFIG, mpp=0.3)):
        assert shards.run_key(path, shards.model_identity(model), changed) != key
    assert shards.run_key(path, shards.model_identity(helpers.oracle_model(0.5)), CONFIG) != key
    assert shards.run_key(path, shards.model_identity(model), CONFIG, roi=(0, 0, 9, 9)) != key


def test_a_shard_holds_the_tables_exactly(tmp_path):
    path = _spiky_slide(tmp_path)
    model = helpers.oracle_model()
    prepared = segment.prepare_slide(path, model, tmp_path / "out", CONFIG, "k")
    prepared.store.open()
    with prepared.open_slide() as slide:
        entries = segment.segment_batch(slide, prepared.plan, model, prepared.tissue, None,
                                        [0, 1, 2], report_lib.StageTimer())
    prepared.store.write(0, entries)
    loaded = prepared.store.read(0)
    assert [index for index, _ in loaded] == [0, 1, 2] and sum(len(t) for _, t in loaded) > 20
    assert sum(t.stats["polygons_repaired"] for _, t in loaded) > 0
    for (_, expected), (_, got) in zip(entries, loaded):
        assert got.ids == expected.ids and got.tile == expected.tile
        assert got.stats == expected.stats
        assert len(got.polygons) == len(expected.polygons)
        for a, b in zip(got.polygons, expected.polygons):
            np.testing.assert_array_equal(a, b)
        if len(expected):
            assert set(got.columns) == set(expected.columns)
            for name, values in expected.columns.items():
                np.testing.assert_array_equal(got.columns[name], values)
                assert got.columns[name].dtype == np.asarray(values).dtype


def test_a_prepared_slide_pickles_compactly_and_exactly(tmp_path):
    path = _spiky_slide(tmp_path)
    prepared = segment.prepare_slide(path, helpers.oracle_model(), tmp_path / "out", CONFIG, "k")
    data = pickle.dumps(prepared)
    copy = pickle.loads(data)
    np.testing.assert_array_equal(copy.tissue.mask, prepared.tissue.mask)
    assert copy.tissue.downsample == prepared.tissue.downsample
    np.testing.assert_array_equal(copy.thumb, prepared.thumb)
    assert copy.plan == prepared.plan and copy.key == "k"
    assert len(data) < prepared.thumb.nbytes  # the thumbnail travels as PNG


def test_tissue_without_nuclei_is_flagged_loudly(tmp_path, caplog):
    path, _ = _grid_slide(tmp_path, "empty")
    model = helpers.oracle_model()
    model.predict_maps = lambda batch: (np.zeros(batch.shape[:3]), np.zeros(batch.shape[:3]))
    report = segment.segment_slide(path, model, tmp_path / "out", CONFIG, progress=False)
    assert report["nuclei"] == 0 and report["tissue_mm2"] > 0.04
    assert len(report["warnings"]) == 1 and report["warnings"][0].startswith("0 nuclei on 0.0")
    assert "0 nuclei on" in caplog.text
    saved = json.loads((tmp_path / "out" / "empty" / "empty_report.json").read_text())
    assert saved["warnings"] == report["warnings"]
