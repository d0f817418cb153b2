"""Many slides on the local engine: --slides expansion, done markers, failures, warnings."""

import json
import os
import tracemalloc

import numpy as np
import pytest

from simgan_histo import config as config_lib
from simgan_histo.wsi import batch, reader, segment
from simgan_histo.wsi import nuclei as nuclei_lib
from tests.wsi import helpers

CONFIG = config_lib.WsiConfig(tile_size_px=256, overlap_px=48, stain_norm="none", batch_size=2,
                              qc_overlays=1)


def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_slides_from_files_globs_and_folders(tmp_path):
    a = _touch(tmp_path / "cohort" / "a.svs")
    b = _touch(tmp_path / "cohort" / "b.ndpi")
    _touch(tmp_path / "cohort" / "notes.txt")  # not a slide
    _touch(tmp_path / "cohort" / ".hidden.svs")
    c = _touch(tmp_path / "more" / "deep" / "c.tif")
    d = _touch(tmp_path / "single" / "d.png")
    got = batch.expand_slides(f"{tmp_path}/more/**/*.tif, {tmp_path / 'cohort'},{d},{a}")
    assert got == [a, b, c, d]  # sorted, `a` once although named twice
    assert batch.expand_slides([str(b)]) == [b]
    os.chdir(tmp_path)
    assert batch.expand_slides("cohort/*.svs") == [a]  # relative globs, absolute results


@pytest.mark.parametrize("spec, message", [
    ("{tmp}/cohort/*.mrxs", "matches no slide file"),
    ("{tmp}/cohort/*.txt", r"matches no slide file \(only 1 other files\)"),
    ("{tmp}/missing.svs", "no such file or folder"),
    ("{tmp}/empty", "holds no slide file"),
    (" , ", "no slide given"),
    ("{tmp}/cohort,{tmp}/other/a.svs", "share a name"),
])
def test_slides_that_match_nothing_are_clear_errors(tmp_path, spec, message):
    _touch(tmp_path / "cohort" / "a.svs")
    _touch(tmp_path / "cohort" / "notes.txt")
    _touch(tmp_path / "other" / "a.svs")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=message):
        batch.expand_slides(spec.format(tmp=tmp_path))


def _disc_slide(folder, name, discs=True, **kwargs):
    points = [(x, y, 3.0) for x in np.arange(30, 270, 20.0) for y in np.arange(30, 170, 20.0)]
    path, _, _ = helpers.disc_slide(folder / f"{name}.svs", 0.25, points if discs else [],
                                    (300, 200), tissue_um=(20, 20, 260, 160), **kwargs)
    return path


def _counting_model(calls):
    model = helpers.oracle_model()

    def predict(images):
        calls.append(len(images))
        return helpers.oracle_maps(images)

    model.predict_maps = predict
    return model


def test_a_rerun_skips_finished_slides_and_redoes_changed_ones(tmp_path):
    slides = tmp_path / "slides"
    slides.mkdir()
    for name in ("one", "two"):
        _disc_slide(slides, name)
    calls = []
    source = batch.LoadedModel(_counting_model(calls))
    first = batch.run_batch(str(slides), source, tmp_path / "out", CONFIG, progress=False)
    assert (first["done"], first["skipped"], first["failed"]) == (2, 0, 0)
    assert first["nuclei"] == 2 * 12 * 7 and calls
    saved = json.loads((tmp_path / "out" / "batch_report.json").read_text())
    assert saved["slides"][0]["slide"] == str(slides / "one.svs") and saved["nuclei"] == 168
    calls.clear()
    again = batch.run_batch(str(slides), source, tmp_path / "out", CONFIG, progress=False)
    assert (again["done"], again["skipped"]) == (0, 2) and not calls  # no model call at all
    assert again["nuclei"] == first["nuclei"]
    changed = batch.run_batch(str(slides), source, tmp_path / "out",
                              config_lib.WsiConfig(**{**CONFIG.__dict__, "overlap_px": 40}),
                              progress=False)
    assert changed["done"] == 2 and calls  # another config: the reports do not match
    report = json.loads((tmp_path / "out" / "two" / "two_report.json").read_text())
    assert report["config"]["overlap_px"] == 40 and not (tmp_path / "out" / "two" /
                                                         "two_shards").exists()


def _bad_slides(folder):
    broken = folder / "broken.svs"
    broken.write_bytes(b"II*\x00" + b"\x00" * 64)
    return broken, _disc_slide(folder, "nompp", record_mpp=False)


def test_skip_errors_records_failures_and_goes_on(tmp_path):
    slides = tmp_path / "slides"
    slides.mkdir()
    broken, nompp = _bad_slides(slides)
    good = _disc_slide(slides, "good")
    empty = _disc_slide(slides, "pink", discs=False)  # tissue, no nucleus
    summary = batch.run_batch(str(slides), batch.LoadedModel(helpers.oracle_model()),
                              tmp_path / "out", CONFIG, skip_errors=True, progress=False)
    assert (summary["done"], summary["failed"]) == (2, 2)
    assert (summary["with_warnings"], summary["zero_nuclei"]) == (1, 1)
    failures = json.loads((tmp_path / "out" / "failures.json").read_text())
    assert failures["failed"] == 2
    by_slide = {f["slide"]: f for f in failures["failures"]}
    assert by_slide[str(broken)]["error_type"] == "SlideReadError"
    assert by_slide[str(nompp)]["error_type"] == "MissingMppError"
    assert "--mpp" in by_slide[str(nompp)]["message"]
    entries = {e["slide"]: e for e in summary["slides"]}
    assert entries[str(good)]["nuclei"] == 84 and not entries[str(good)]["warnings"]
    assert entries[str(empty)]["warnings"][0].startswith("0 nuclei on")
    # Fixed, a rerun does the failed slides only and drops the stale failure list.
    broken.unlink()
    nompp.unlink()
    again = batch.run_batch(str(slides), batch.LoadedModel(helpers.oracle_model()),
                            tmp_path / "out", CONFIG, skip_errors=True, progress=False)
    assert (again["skipped"], again["failed"]) == (2, 0)
    assert not (tmp_path / "out" / "failures.json").exists()


def test_without_skip_errors_the_first_failure_stops_before_the_model_runs(tmp_path):
    slides = tmp_path / "slides"
    slides.mkdir()
    _bad_slides(slides)
    _disc_slide(slides, "good")
    calls = []
    with pytest.raises(batch.SlideFailedError, match="broken.svs: SlideReadError") as caught:
        batch.run_batch(str(slides), batch.LoadedModel(_counting_model(calls)),
                        tmp_path / "out", CONFIG, progress=False)
    assert isinstance(caught.value.__cause__, reader.SlideReadError)
    assert not calls and not (tmp_path / "out").exists()


def test_a_failure_inside_a_slide_is_recorded_too(tmp_path):
    slides = tmp_path / "slides"
    slides.mkdir()
    for name in ("a", "b"):
        _disc_slide(slides, name)
    masks = tmp_path / "masks"
    masks.mkdir()
    import cv2  # pylint: disable=import-outside-toplevel
    cv2.imwrite(str(masks / "b.png"), np.full((20, 30), 255, np.uint8))  # a.png is missing
    summary = batch.run_batch(str(slides), batch.LoadedModel(helpers.oracle_model()),
                              tmp_path / "out", CONFIG, mask_dir=masks, skip_errors=True,
                              progress=False)
    assert (summary["done"], summary["failed"]) == (1, 1)
    failure = json.loads((tmp_path / "out" / "failures.json").read_text())["failures"][0]
    assert failure["slide"] == str(slides / "a.svs") and "a" in failure["message"]


def _synthetic_table(plan, tile_index, count, rng):
    """`count` round nuclei of 40 vertices inside the tile's core (level-0 px)."""
    x, y, width, height = plan.core_box(plan.tiles[tile_index])
    centres = np.stack([x + rng.uniform(8, width - 8, count),
                        y + rng.uniform(8, height - 8, count)], 1)
    angles = np.linspace(0, 2 * np.pi, 40, endpoint=False)
    ring = 5 * np.stack([np.cos(angles), np.sin(angles)], 1)
    columns = {"centroid_x": centres[:, 0], "centroid_y": centres[:, 1],
               "area_px": np.full(count, 19.6), "area_um2": np.full(count, 4.9)}
    return nuclei_lib.NucleusTable(
        ids=[f"{tile_index:08d}-0000-0000-0000-{i:012d}" for i in range(count)],
        polygons=[centre + ring for centre in centres], columns=columns,
        tile=plan.tiles[tile_index].index, stats={})


def _merge_peak_bytes(prepared, model, per_tile):
    rng = np.random.default_rng(0)
    prepared.store.open()
    for index, (start, stop) in enumerate(prepared.ranges):
        prepared.store.write(index, [(i, _synthetic_table(prepared.plan, i, per_tile, rng))
                                     for i in range(start, stop)])
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        report = segment.merge_slide(prepared, model)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert report["nuclei"] == per_tile * len(prepared.plan.tiles)
    return peak


def test_merging_holds_one_shard_not_the_slides_nuclei(tmp_path):
    """RAM while merging does not grow with the nuclei of the slide (only of one shard)."""
    path = _disc_slide(tmp_path, "wide", discs=False)
    model = helpers.oracle_model()
    # No QC overlay: by design it keeps the outlines inside its fixed-size boxes.
    config = config_lib.WsiConfig(**{**CONFIG.__dict__, "qc_overlays": 0})
    prepared = segment.prepare_slide(path, model, tmp_path / "out", config, "k")
    shards_count = len(prepared.ranges)
    assert shards_count >= 3 and len(prepared.plan.tiles) >= 6
    empty = _merge_peak_bytes(prepared, model, 0)
    full = _merge_peak_bytes(prepared, model, 60)
    # Holding every nucleus would cost at least their vertices: 1440 × 40 × 2 float64.
    all_vertices = 60 * len(prepared.plan.tiles) * 40 * 2 * 8
    assert full - empty < all_vertices / 4  # measured: ~0 (one shard is ~1/12 of them)
