"""The Dask engine on a real LocalCluster (2 worker processes, 1 thread each), real exports.

Outputs must equal the local engine's byte for byte (minus timestamps), each worker must load
the model once, and a worker killed mid-run must cost nothing: its tasks are retried
elsewhere and the merged outputs have every nucleus exactly once.
"""

import dataclasses
import json
import os
import signal
import threading
import time

import numpy as np
import pytest

from simgan_histo import config as config_lib
from simgan_histo.wsi import batch
from tests.wsi import export_helpers, helpers

distributed = pytest.importorskip("distributed")

CONFIG = config_lib.WsiConfig(tile_size_px=256, overlap_px=32, stain_norm="none", batch_size=2,
                              qc_overlays=1)
DASK = dataclasses.replace(CONFIG, engine="dask")


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    return export_helpers.darkness_export(tmp_path_factory)


@pytest.fixture(scope="module")
def slides(tmp_path_factory, sample_slide):
    folder = tmp_path_factory.mktemp("slides")
    discs = [(x, y, 3.0) for x in np.arange(30, 275, 17.0) for y in np.arange(30, 175, 17.0)]
    helpers.disc_slide(folder / "discs.svs", 0.25, discs, (300, 200),
                       tissue_um=(20, 20, 260, 160))
    export_helpers.sample_crop(sample_slide, folder / "sample.svs")
    return folder


@pytest.fixture(scope="module")
def reference(tmp_path_factory, slides, export_dir):
    """The local engine's outputs (this process), the yardstick."""
    out = tmp_path_factory.mktemp("local")
    summary = batch.run_batch([slides / "discs.svs", slides / "sample.svs"],
                              batch.ExportModel(str(export_dir)), out, CONFIG,
                              progress=False)
    assert summary["done"] == 2
    return out


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as local_cluster:
        with distributed.Client(local_cluster) as client:
            yield local_cluster, client


def _outputs(root):
    """Every output file's bytes, minus the report and algmeta files (they hold times)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.name.endswith(("_report.json", "-algmeta.json"))
            and p.name != "batch_report.json"}


def _features(root, name):
    return helpers.load_features(root / name / f"{name}.geojson")


def test_dask_outputs_equal_the_local_engines(tmp_path, slides, export_dir, reference, cluster):
    local_cluster, client = cluster
    broken = tmp_path / "broken.svs"
    broken.write_bytes(b"II*\x00" + b"\x00" * 64)
    summary = batch.run_batch(f"{slides}/*.svs,{broken}", batch.ExportModel(str(export_dir)),
                              tmp_path / "out", DASK, skip_errors=True,
                              progress=False, scheduler=local_cluster.scheduler_address,
                              tiles_per_task=2)
    assert (summary["done"], summary["failed"]) == (2, 1)
    failures = json.loads((tmp_path / "out" / "failures.json").read_text())["failures"]
    assert [f["slide"] for f in failures] == [str(broken)]
    assert failures[0]["error_type"] == "SlideReadError"
    assert "broken.svs" in failures[0]["message"]
    (tmp_path / "out" / "failures.json").unlink()
    assert _outputs(tmp_path / "out") == _outputs(reference)
    assert len(_features(reference, "sample")) > 300 and len(_features(reference, "discs")) == 135
    report = json.loads((tmp_path / "out" / "sample" / "sample_report.json").read_text())
    assert report["engine"] == "dask" and report["shards"]["total"] > 10
    # Many tasks per worker, one model load per worker.
    loads = client.run(lambda: batch.LOAD_COUNT["loads"])
    assert sorted(loads.values()) == [1, 1], loads


@pytest.mark.slow
def test_a_killed_worker_loses_and_duplicates_nothing(tmp_path, slides, export_dir, reference,
                                                      cluster):
    local_cluster, client = cluster
    pids = client.run(os.getpid)
    result = {}

    def run():
        result["summary"] = batch.run_batch(
            [slides / "discs.svs", slides / "sample.svs"], batch.ExportModel(str(export_dir)),
            tmp_path / "out", DASK, progress=False,
            scheduler=local_cluster.scheduler_address, tiles_per_task=2)

    thread = threading.Thread(target=run)
    thread.start()
    shard_dir = tmp_path / "out" / "sample" / "sample_shards"
    victim, deadline = None, time.time() + 120
    while victim is None and time.time() < deadline and thread.is_alive():
        busy = {address: keys for address, keys in client.processing().items()
                if any("shards_task" in str(key) for key in keys)}
        if busy and len(list(shard_dir.glob("shard_*.npz"))) >= 2:
            victim = next(iter(busy))
            os.kill(pids[victim], signal.SIGKILL)  # mid-task: its work is lost with it
        time.sleep(0.02)
    thread.join(timeout=300)
    assert victim is not None, "the run ended before a worker could be killed"
    assert result["summary"]["done"] == 2
    assert pids[victim] not in client.run(os.getpid).values()  # really dead (nanny restarted)
    assert _outputs(tmp_path / "out") == _outputs(reference)
    for name in ("sample", "discs"):
        ids = [feature["id"] for feature in _features(tmp_path / "out", name)]
        assert len(ids) == len(set(ids)) == len(_features(reference, name))
