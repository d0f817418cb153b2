"""The run report of one slide: what was found, on how much tissue, how fast, where time went.

Throughput is `mp_per_s` = megapixels of tissue at the model's processing resolution ÷ wall
time, end to end (issue 8's `pipeline_mp_per_s`). Each stage records wall seconds and
core-seconds (process CPU time, all threads), so non-model stages can be judged per MP;
stages that ran in other processes (Dask tasks) are added in (`StageTimer.add`).

`warnings` lists what a reader of a cohort's results must not miss, e.g. a slide with tissue
but no nucleus (a wrong µm/px, stain or model), also logged and counted by the batch driver.
"""

import collections
import contextlib
import dataclasses
import datetime
import pathlib
import subprocess
import time
from typing import Optional

from simgan_histo import stain


def git_commit() -> str:
    """HEAD of the checkout this code runs from ("unknown" outside git); no TF import."""
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                cwd=pathlib.Path(__file__).resolve().parents[2], timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return result.stdout.strip() if result.returncode == 0 else "unknown"


class StageTimer:
    """Accumulates wall and CPU seconds per named stage: `with timer("model"): ...`."""

    def __init__(self):
        self.wall = collections.defaultdict(float)
        self.cpu = collections.defaultdict(float)

    @contextlib.contextmanager
    def __call__(self, name: str):
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.wall[name] += time.perf_counter() - wall
            self.cpu[name] += time.process_time() - cpu

    def add(self, stages: dict) -> None:
        """Adds another timer's `as_dict()` (e.g. from a Dask task) to this one."""
        for name, values in stages.items():
            self.wall[name] += values["wall_s"]
            self.cpu[name] += values["cpu_s"]

    def as_dict(self) -> dict:
        return {name: {"wall_s": round(self.wall[name], 4), "cpu_s": round(self.cpu[name], 4)}
                for name in self.wall}


def slide_warnings(plan, tissue_mm2: float, nuclei: int) -> list:
    """Messages for results that look wrong: no tissue, or tissue without a single nucleus."""
    if not plan.tiles:
        return [f"no tissue found ({plan.total_tiles} tiles, none on tissue): nothing was "
                f"segmented; check the slide, or give a tissue mask (--mask_dir) or --roi"]
    if nuclei == 0:
        return [f"0 nuclei on {tissue_mm2:.3f} mm² of tissue ({len(plan.tiles)} tiles): check "
                f"the slide's µm/px (--mpp), the stain normalisation and the model"]
    return []


def build_report(slide, plan, model, tissue, stain_pair, config, totals: dict, timer,
                 started: float, outputs, run: Optional[dict] = None) -> dict:
    """The report dict (JSON-ready) of one segmented slide.

    `run` (run key, engine, shard counts) is merged in at the top level.
    """
    wall_s = time.time() - started
    tissue_um2 = tissue.area_um2(plan.slide_mpp)
    tissue_mp = tissue_um2 / plan.model_mpp ** 2 / 1e6
    core_mp = sum(tile.write[2] * tile.write[3] for tile in plan.tiles) / 1e6
    nuclei = int(totals.get("nuclei", 0))
    return {
        **(run or {}),
        "warnings": slide_warnings(plan, tissue_um2 / 1e6, nuclei),
        "slide": {"path": str(slide.path), "name": plan.name, "dimensions": list(plan.dimensions),
                  "mpp": plan.slide_mpp, "mpp_source": slide.mpp_source,
                  "backend": slide.backend, "level_downsamples": list(slide.level_downsamples)},
        "model": {"name": model.name, "mpp": model.mpp, "stride": model.stride,
                  "info": model.info},
        "processing": {"downsample": plan.downsample, "resample_factor": 1.0 / plan.downsample,
                       "read_level": slide.best_level(plan.downsample),
                       "tile_size_px": plan.tile_size, "region_origin_px": list(plan.origin),
                       "region_shape_px": list(plan.shape)},
        "tissue": {"source": tissue.source, "mask_shape": list(tissue.mask.shape)},
        "stain": (None if stain_pair is None else
                  {"method": "reinhard", "slide": stain.stats_to_json(stain_pair[0]),
                   "target": stain.stats_to_json(stain_pair[1])}),
        "config": dataclasses.asdict(config),
        "nuclei": nuclei,
        "counts": {key: int(value) for key, value in totals.items()},
        "tiles": {"total": plan.total_tiles, "processed": len(plan.tiles),
                  "skipped_without_tissue": plan.total_tiles - len(plan.tiles)},
        "tissue_mm2": tissue_um2 / 1e6,
        "tissue_mp": tissue_mp,
        "processed_core_mp": core_mp,
        "wall_s": wall_s,
        "mp_per_s": tissue_mp / wall_s if wall_s > 0 else 0.0,
        "stages": timer.as_dict(),
        "outputs": [str(path) for path in outputs],
        "git_commit": git_commit(),
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
