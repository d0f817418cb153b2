"""One slide end to end (DESIGN §1 item 8, STYLE §7).

    read (best level, resampled by downsample = model mpp ÷ slide mpp)
      → tissue mask (thumbnail Otsu, a mask file, an ROI)
      → Reinhard to the model's target, statistics estimated ONCE per slide on tissue
      → overlapping tiles (`tiling.cover`), only those with tissue
      → model (batches) → watershed per tile → keep the nuclei the tile owns (`nuclei`)
      → streaming writers (GeoJSON, TCGA CSVs, morphometry, QC) → run report.

The run has three steps, each a function of explicit, picklable inputs, so the local loop
and the Dask engine (`dask_engine`) call the same code:

    prepare_slide  → a `PreparedSlide` (plan, tissue, stain statistics, QC thumbnail, run key)
    compute_shards → the nuclei of each batch of tiles, one atomic shard file each (`shards`)
    merge_slide    → the shards, in tile order, through the streaming writers; the report

RAM holds one batch of tiles (or one shard) plus the thumbnail, whatever the slide size.
Outputs go to `<out>/<slide stem>/`; the report (`<stem>_report.json`) is written last and
marks the slide done; the shards are removed after it. A run killed midway resumes from its
shards (same run key) and gives the same outputs as an uninterrupted run.
"""

import dataclasses
import pathlib
import time
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np
import tqdm
from absl import logging

from simgan_histo import stain
from simgan_histo.wsi import nuclei as nuclei_lib
from simgan_histo.wsi import plan as plan_lib
from simgan_histo.wsi import qc, reader, shards, tissue as tissue_lib, writers
from simgan_histo.wsi import report as report_lib


def segment_batch(slide, plan: plan_lib.SlidePlan, model, tissue, stain_pair,
                  indices: Sequence[int], timer, context_px: int = 0) -> List[shards.Entry]:
    """The nuclei of the tiles `plan.tiles[i]`, i in `indices`, run as one model batch.

    Returns:
      (tile index, `NucleusTable`) per tile, in the order of `indices`.
    """
    batch = [plan.tiles[index] for index in indices]
    with timer("read_and_stain"):
        images = np.stack([plan_lib.read_tile(slide, plan, tile, stain_pair)
                           for tile in batch])
    with timer("model"):
        segmentation, detection = model.maps(images)
    entries = []
    for position, (index, tile) in enumerate(zip(indices, batch)):
        with timer("postprocess"):
            labels = model.instances(segmentation[position], detection[position],
                                     image=images[position])
            table = nuclei_lib.tile_nuclei(
                np.asarray(labels), images[position], segmentation[position], tile, plan.origin,
                plan.downsample, plan.model_mpp, plan.name, tissue, context_px)
        entries.append((index, table))
    return entries


@dataclasses.dataclass
class SlideOutputs:
    """The output paths of one slide under `<out>/<stem>/`."""

    folder: pathlib.Path
    stem: str

    @property
    def geojson(self) -> pathlib.Path:
        return self.folder / f"{self.stem}.geojson"

    @property
    def morphometry(self) -> pathlib.Path:
        return self.folder / f"{self.stem}_nuclei.csv"

    @property
    def tcga(self) -> pathlib.Path:
        return self.folder / f"{self.stem}_tcga"

    @property
    def report(self) -> pathlib.Path:
        return self.folder / f"{self.stem}_report.json"

    @property
    def shards(self) -> pathlib.Path:
        return self.folder / f"{self.stem}_shards"


def outputs_of(path, out_dir) -> SlideOutputs:
    """Where the slide at `path` writes under `out_dir` (named by the file's stem)."""
    stem = pathlib.Path(path).stem
    return SlideOutputs(pathlib.Path(out_dir) / stem, stem)


@dataclasses.dataclass
class PreparedSlide:
    """A slide ready for its shards and merge: plain data, picklable (the Dask engine ships it).

    Pickled, the tissue mask travels as packed bits and the QC thumbnail as PNG bytes
    (lossless), a few MB at most whatever the slide size.
    """

    path: str
    backend: str
    key: str  # `shards.run_key`
    out_dir: str
    config: object  # WsiConfig
    plan: plan_lib.SlidePlan
    tissue: tissue_lib.TissueMask
    stain_pair: Optional[Tuple[stain.Stats, stain.Stats]]
    thumb: np.ndarray  # QC thumbnail, RGB
    overlay_boxes: List[Tuple[int, int, int, int]]
    started: float  # time.time() when this run of the slide began
    timings: dict  # `StageTimer.as_dict()` of the preparation

    @property
    def outputs(self) -> SlideOutputs:
        return SlideOutputs(pathlib.Path(self.out_dir) / self.plan.name, self.plan.name)

    @property
    def ranges(self) -> List[Tuple[int, int]]:
        return shards.shard_ranges(len(self.plan.tiles), self.config.batch_size)

    @property
    def store(self) -> shards.ShardStore:
        return shards.ShardStore(self.outputs.shards, self.key, len(self.ranges))

    def open_slide(self) -> reader.Slide:
        return reader.open_slide(self.path, mpp=self.config.mpp, backend=self.backend)

    def __getstate__(self):
        state = dict(self.__dict__)
        fields = {f.name: getattr(self.tissue, f.name) for f in dataclasses.fields(self.tissue)}
        mask = fields.pop("mask")
        state["tissue"] = (np.packbits(mask), mask.shape, fields)
        ok, png = cv2.imencode(".png", self.thumb)
        if not ok:
            raise RuntimeError(f"{self.path}: cannot encode the QC thumbnail")
        state["thumb"] = png.tobytes()
        return state

    def __setstate__(self, state):
        packed, shape, fields = state["tissue"]
        mask = np.unpackbits(packed, count=int(np.prod(shape))).reshape(shape).astype(bool)
        state["tissue"] = tissue_lib.TissueMask(mask=mask, **fields)
        state["thumb"] = cv2.imdecode(np.frombuffer(state["thumb"], np.uint8),
                                      cv2.IMREAD_UNCHANGED)
        self.__dict__.update(state)


def preflight(path, config, backend: str = "auto") -> float:
    """Opens the slide and checks its µm/px; returns it. Cheap: run it before loading a model.

    Raises:
      reader.SlideReadError: unreadable or corrupt slide (MissingMppError: no µm/px).
    """
    with reader.open_slide(path, mpp=config.mpp, backend=backend) as slide:
        return reader.require_mpp(slide)


def prepare_slide(path, model, out_dir, config, key: str, mask_dir=None,
                  roi: Optional[Sequence[float]] = None, backend: str = "auto") -> PreparedSlide:
    """Tissue mask, plan, Reinhard statistics, QC thumbnail and overlay boxes of a slide.

    Raises:
      reader.SlideReadError: unreadable or corrupt slide (MissingMppError: no µm/px).
      ValueError: inconsistent settings (e.g. Reinhard without a target).
    """
    timer, started = report_lib.StageTimer(), time.time()
    with timer("open"):
        slide = reader.open_slide(path, mpp=config.mpp, backend=backend)
    with slide:
        slide_mpp = reader.require_mpp(slide)
        with timer("tissue"):
            tissue = tissue_lib.slide_tissue(slide, slide_mpp, config, mask_dir, roi)
            thumb = tissue_lib.thumbnail(slide, qc.thumbnail_downsample(slide.dimensions))
        plan = plan_lib.plan_slide(slide.path.stem, slide.dimensions, slide_mpp, tissue,
                                   model.mpp, model.stride, config)
        with timer("stain_estimate"):
            stain_pair = plan_lib.resolve_stain(config.stain_norm, model,
                                                lambda: plan_lib.estimate_stain(slide, plan))
        boxes = qc.choose_overlay_boxes(tissue, slide.dimensions, config.qc_overlays,
                                        config.qc_overlay_px)
    return PreparedSlide(path=str(path), backend=backend, key=key, out_dir=str(out_dir),
                         config=config, plan=plan, tissue=tissue, stain_pair=stain_pair,
                         thumb=thumb, overlay_boxes=boxes, started=started,
                         timings=timer.as_dict())


def compute_shards(prepared: PreparedSlide, model, indices: Optional[Sequence[int]] = None,
                   progress: bool = True) -> dict:
    """Computes and writes shards `indices` (default: the missing ones); returns the timings.

    Call `prepared.store.open()` first (it creates the folder and checks the run key).
    """
    store, ranges, plan = prepared.store, prepared.ranges, prepared.plan
    indices = store.missing() if indices is None else list(indices)
    timer = report_lib.StageTimer()
    todo = sum(ranges[index][1] - ranges[index][0] for index in indices)
    bar = tqdm.tqdm(total=len(plan.tiles), initial=len(plan.tiles) - todo, desc=plan.name,
                    unit="tile", disable=not progress, leave=False)
    with prepared.open_slide() as slide:
        for index in indices:
            start, stop = ranges[index]
            entries = segment_batch(slide, plan, model, prepared.tissue, prepared.stain_pair,
                                    range(start, stop), timer, prepared.config.context_px)
            with timer("write"):
                store.write(index, entries)
            bar.update(stop - start)
    bar.close()
    return timer.as_dict()


def _algmeta_fields(plan: plan_lib.SlidePlan, model) -> dict:
    """Slide- and model-level fields of the TCGA algmeta JSONs (release `gen_json.py` keys)."""
    thresholds = model.info.get("thresholds", {})
    values = [thresholds.get(key, "") for key in
              ("seg_threshold", "det_threshold", "min_area_px", "max_area_px")]
    return {"subject_id": plan.name, "case_id": plan.name,
            "analysis_id": f"simgan_histo:{model.info.get('config_hash', model.name)}",
            "analysis_desc": "_".join(["simgan_histo"] + [str(v) for v in values]),
            "version": {"git_commit": model.info.get("git_commit", "unknown"),
                        "model": model.name, "model_hash": model.info.get("config_hash", "")}}


def _open_writers(prepared: PreparedSlide, slide, model):
    paths, plan, config = prepared.outputs, prepared.plan, prepared.config
    return [writers.GeoJsonWriter(paths.geojson), writers.MorphometryWriter(paths.morphometry),
            writers.TcgaCsvWriter(paths.tcga, slide.dimensions, plan.slide_mpp, plan.downsample,
                                  config.csv_tile_px, _algmeta_fields(plan, model)),
            qc.QcWriter(paths.folder, paths.stem, prepared.thumb, prepared.tissue,
                        slide.dimensions, prepared.overlay_boxes)]


def _stream_shards(prepared: PreparedSlide, outputs, timer) -> dict:
    """Feeds every shard, in tile order, to the writers; returns the summed counters."""
    store, plan = prepared.store, prepared.plan
    totals = {"nuclei": 0}
    for index in range(store.count):
        with timer("merge_read"):
            entries = store.read(index)
        with timer("write"):
            for tile_index, table in entries:
                for output in outputs:
                    output.write(table, plan.core_box(plan.tiles[tile_index]))
                totals["nuclei"] += len(table)
                for key, value in table.stats.items():
                    totals[key] = totals.get(key, 0) + value
    return totals


def merge_slide(prepared: PreparedSlide, model, timings: Sequence[dict] = (),
                engine: str = "local", reused: int = 0) -> dict:
    """Merges the shards into the outputs, writes the report, removes the shards.

    Args:
      prepared: the slide.
      model: the model (its identity goes into the report and the TCGA algmeta files).
      timings: `compute_shards` results, summed into the report's stages.
      engine: "local" or "dask", for the report.
      reused: shards a previous run had written, for the report.

    Raises:
      RuntimeError: a shard is missing.
    """
    store, paths, plan = prepared.store, prepared.outputs, prepared.plan
    missing = store.missing()
    if missing:
        raise RuntimeError(f"{plan.name}: {len(missing)} shard(s) missing (first: "
                           f"{store.path(missing[0])}); cannot merge")
    timer = report_lib.StageTimer()
    for timing in (prepared.timings, *timings):
        timer.add(timing)
    with prepared.open_slide() as slide:
        outputs = _open_writers(prepared, slide, model)
        try:
            totals = _stream_shards(prepared, outputs, timer)
            with timer("write"):
                written = [output.close() for output in outputs[:3]] + outputs[3].close(slide)
        except BaseException:
            for output in outputs:
                output.abort()
            raise
        report = report_lib.build_report(
            slide, plan, model, prepared.tissue, prepared.stain_pair, prepared.config, totals,
            timer, prepared.started, written + [paths.report],
            run={"run_key": prepared.key, "engine": engine,
                 "shards": {"total": store.count, "reused": reused}})
    for warning in report["warnings"]:
        logging.warning("%s: %s", plan.name, warning)
    writers.atomic_write_json(paths.report, report)
    store.remove()  # after the report: a kill in between re-merges the same shards
    logging.info("%s: %d nuclei, %.2f mm² tissue, %.2f MP/s", plan.name, report["nuclei"],
                 report["tissue_mm2"], report["mp_per_s"])
    return report


def segment_slide(path, model, out_dir, config, mask_dir=None,
                  roi: Optional[Sequence[float]] = None, backend: str = "auto",
                  progress: bool = True, key: Optional[str] = None) -> dict:
    """Segments one slide; writes its outputs under `<out_dir>/<stem>/`; returns the report.

    Resumes from the shards of an interrupted run with the same run key.

    Args:
      path: the slide (any format `reader.open_slide` reads).
      model: a `model.SegmentationModel`.
      out_dir: the output root.
      config: `WsiConfig` (`mpp` overrides the slide's µm/px).
      mask_dir: folder of tissue masks matched by file name (None: automatic Otsu mask).
      roi: level-0 (x, y, width, height) to restrict to.
      backend: slide reader backend.
      progress: show a tqdm bar.
      key: the run key (default: `shards.run_key` of the slide, the model, config, mask, ROI).

    Raises:
      reader.SlideReadError: unreadable or corrupt slide (MissingMppError: no µm/px).
      ValueError: inconsistent settings (e.g. Reinhard without a target).
    """
    key = key or shards.run_key(path, shards.model_identity(model), config, mask_dir, roi)
    prepared = prepare_slide(path, model, out_dir, config, key, mask_dir, roi, backend)
    reused = prepared.store.open()
    if reused:
        logging.info("%s: resuming: %d of %d shards already done", prepared.plan.name, reused,
                     prepared.store.count)
    timings = compute_shards(prepared, model, progress=progress)
    return merge_slide(prepared, model, [timings], reused=reused)
