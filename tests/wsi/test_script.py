"""`segment_wsi.py` end to end with real exported SavedModels, including a killed run."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from simgan_histo.wsi import model as model_lib
from tests.conftest import REPO
from tests.wsi import export_helpers, helpers


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    from simgan_histo import config as config_lib
    from simgan_histo.models import task_net
    from simgan_histo.training import export

    config = config_lib.tiny()
    target = (np.array([70.0, 20.0, -10.0]), np.array([12.0, 6.0, 9.0]))
    settings = export.inference_settings(config, target, mpp=0.5,
                                         thresholds={"seg_threshold": 0.6})
    root = tmp_path_factory.mktemp("export") / "model"
    export.export_task_model(task_net.build_task_net(config.task), root, config, settings)
    return root


def _slide(tmp_path, record_mpp=True):
    discs = [(x, y, 3.0) for x in np.arange(20, 180, 20.0) for y in np.arange(20, 120, 20.0)]
    path, _, _ = helpers.disc_slide(tmp_path / "slide.svs", 0.25, discs, (200, 140),
                                    tissue_um=(10, 10, 180, 120), record_mpp=record_mpp)
    return path


def _command(*args):
    return [sys.executable, "segment_wsi.py", "--preset=tiny", *args]


def _run(*args):
    return subprocess.run(_command(*args), cwd=REPO, capture_output=True, text=True, timeout=300)


def test_export_settings_reach_the_slide_path(export_dir):
    model = model_lib.from_export(export_dir)
    assert model.mpp == 0.5 and model.stride == 2
    np.testing.assert_allclose(model.stain_target[0], [70.0, 20.0, -10.0])
    assert model.info["thresholds"]["seg_threshold"] == 0.6
    segmentation, detection = model.maps(np.zeros((2, 64, 64, 3), np.uint8))
    assert segmentation.shape == detection.shape == (2, 64, 64)
    assert 0 <= segmentation.min() and segmentation.max() <= 1


@pytest.mark.slow
def test_script_segments_a_slide_with_flag_overrides(tmp_path, export_dir):
    path = _slide(tmp_path, record_mpp=False)
    result = _run(f"--slides={path}", f"--out={tmp_path / 'out'}", f"--model={export_dir}",
                  "--mpp=0.25", "--tile_size=128", "--overlap=32")
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "out" / "slide" / "slide_report.json").read_text())
    assert report["model"]["name"].endswith("model/1")
    assert report["slide"]["mpp_source"] == "override"
    assert report["processing"]["downsample"] == 2.0  # 0.5 µm/px model on a 0.25 µm/px slide
    assert report["stain"]["target"]["lab_mean"] == [70.0, 20.0, -10.0]  # auto = the export's
    assert report["processing"]["tile_size_px"] == 128
    assert report["config"]["min_tissue_area_um2"] == 10000.0  # the tiny preset's default
    assert "slide.geojson" in result.stderr  # the output paths are printed
    for name in ("slide.geojson", "slide_nuclei.csv", "slide_tcga", "slide_qc_thumbnail.png"):
        assert (tmp_path / "out" / "slide" / name).exists()


def test_script_reports_missing_mpp_before_loading_the_model(tmp_path):
    path = _slide(tmp_path, record_mpp=False)
    result = _run(f"--slides={path}", f"--out={tmp_path / 'out'}", "--model=/nonexistent")
    assert result.returncode == 2
    assert "--mpp" in result.stderr and "slide.svs" in result.stderr
    assert not (tmp_path / "out").exists()


def test_slides_matching_nothing_is_a_clear_error(tmp_path):
    result = _run(f"--slides={tmp_path}/*.svs", f"--out={tmp_path / 'out'}")
    assert result.returncode == 2
    assert "matches no slide file" in result.stderr and "Traceback" not in result.stderr


def _outputs(root):
    """Every output file's bytes, minus reports and algmeta files (they hold times)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.name.endswith(("_report.json", "-algmeta.json"))
            and p.name != "batch_report.json"}


def _kill_when_sharded(process, shard_dir, report):
    """SIGKILLs `process` once 2 shards of the slide exist (and its report does not)."""
    deadline = time.time() + 240
    while process.poll() is None and time.time() < deadline:
        if len(list(shard_dir.glob("shard_*.npz"))) >= 2 and not report.exists():
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
            return True
        time.sleep(0.01)
    return False


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_uninterrupted_runs_outputs(tmp_path, tmp_path_factory,
                                                                sample_slide):
    export = export_helpers.darkness_export(tmp_path_factory)
    slides = tmp_path / "slides"
    slides.mkdir()
    helpers.disc_slide(slides / "discs.svs", 0.25, [(x, y, 3.0) for x in range(30, 270, 20)
                                                    for y in range(30, 170, 20)],
                       (300, 200), tissue_um=(20, 20, 260, 160))
    export_helpers.sample_crop(sample_slide, slides / "sample.svs")
    (slides / "broken.svs").write_bytes(b"II*\x00" + b"\x00" * 64)
    args = [f"--slides={slides}", f"--model={export}", "--tile_size=128", "--overlap=32",
            "--stain_norm=none", "--skip_errors"]
    out = tmp_path / "out"
    process = subprocess.Popen(_command(*args, f"--out={out}"), cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    report = out / "sample" / "sample_report.json"
    assert _kill_when_sharded(process, out / "sample" / "sample_shards", report), \
        "the run ended before it could be killed"
    assert (out / "discs" / "discs_report.json").exists()  # the first slide was finished
    resumed = _run(*args, f"--out={out}")
    assert resumed.returncode == 1, resumed.stderr  # broken.svs failed (and was skipped)
    summary = json.loads((out / "batch_report.json").read_text())
    assert (summary["done"], summary["skipped"], summary["failed"]) == (1, 1, 1)
    failures = json.loads((out / "failures.json").read_text())["failures"]
    assert [(f["slide"], f["error_type"]) for f in failures] == [
        (str(slides / "broken.svs"), "SlideReadError")]
    assert json.loads(report.read_text())["shards"]["reused"] >= 2
    uninterrupted = _run(*args, f"--out={tmp_path / 'ref'}")
    assert uninterrupted.returncode == 1
    assert _outputs(out) == _outputs(tmp_path / "ref")
    for name, count in (("discs", 12 * 7), ("sample", None)):
        ids = [f["id"] for f in helpers.load_features(out / name / f"{name}.geojson")]
        assert len(ids) == len(set(ids)) > 0 and count in (None, len(ids))
