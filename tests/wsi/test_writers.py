"""Output files: atomic writes, and no temporary file left behind by a killed writer."""

import json

from simgan_histo.wsi import writers


def test_a_rerun_removes_the_temporary_files_a_killed_writer_left(tmp_path):
    target = tmp_path / "slide.geojson"
    # What a writer killed with SIGKILL leaves: its pid-named temporary sibling, half written.
    stale = tmp_path / ".slide.geojson.tmp-999999"
    stale.write_text('{"type": "FeatureCollection", "features": [')
    other = tmp_path / ".slide_nuclei.csv.tmp-999999"  # another output's: not ours to touch
    other.write_text("id,")
    writer = writers.GeoJsonWriter(target)
    writer.close()
    assert not stale.exists() and other.exists()
    assert json.loads(target.read_text())["features"] == []
    writers.atomic_write_json(tmp_path / "report.json", {"ok": 1})
    stale_folder = tmp_path / ".slide_tcga.tmp-999999"  # the TCGA writer's temporary folder
    (stale_folder / "part").mkdir(parents=True)
    assert writers.temporary_path(tmp_path / "slide_tcga").name.startswith(".slide_tcga.tmp-")
    assert not stale_folder.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".slide_nuclei.csv.tmp-999999", "report.json", "slide.geojson"]
