"""One slide end to end (DESIGN §1 item 8, STYLE §7).

    read (best level, resampled by downsample = model mpp ÷ slide mpp)
      → tissue mask (thumbnail Otsu, a mask file, an ROI)
      → Reinhard to the model's target, statistics estimated ONCE per slide on tissue
      → overlapping tiles (`tiling.cover`), only those with tissue
      → model (batches) → watershed per tile → keep the nuclei the tile owns (`nuclei`)
      → streaming writers (GeoJSON, TCGA CSVs, morphometry, QC) → run report.

Each stage is a separate function of explicit inputs (`plan_slide`, `estimate_stain`,
`read_tile`, `segment_tiles`, …) so a sharded or Dask engine can call them per tile; RAM
holds one batch of tiles plus the thumbnail, whatever the slide size. Outputs go to
`<out>/<slide stem>/`; the report (`<stem>_report.json`) is written last and marks the slide
done.
"""

import dataclasses
import math
import pathlib
import time
from typing import Optional, Sequence, Tuple

import numpy as np
import tqdm
from absl import logging

from simgan_histo import stain
from simgan_histo.wsi import nuclei as nuclei_lib
from simgan_histo.wsi import qc, reader, tiling, tissue as tissue_lib, writers
from simgan_histo.wsi.report import StageTimer, build_report

STAIN_SAMPLES = 16  # tiles whose centre crop feeds the slide's Reinhard statistics
STAIN_SAMPLE_PX = 512


@dataclasses.dataclass(frozen=True)
class SlidePlan:
    """Where and how a slide is processed. Region and tiles are in processing px."""

    name: str
    dimensions: Tuple[int, int]  # level-0 (width, height)
    slide_mpp: float
    model_mpp: float
    downsample: float  # level-0 px per processing px
    origin: Tuple[int, int]  # region corner in the slide's processing px
    shape: Tuple[int, int]  # region (height, width)
    tile_size: int
    tiles: Tuple[tiling.Tile, ...]  # tiles with tissue, row-major
    total_tiles: int

    def read_box(self, tile: tiling.Tile) -> Tuple[float, float, float, float]:
        """Level-0 box of the tile's read window."""
        x, y, width, height = tile.read
        return ((x + self.origin[0]) * self.downsample, (y + self.origin[1]) * self.downsample,
                width * self.downsample, height * self.downsample)

    def core_box(self, tile: tiling.Tile) -> Tuple[float, float, float, float]:
        """Level-0 box of the tile's core (write window)."""
        x, y, width, height = tile.write
        return ((x + self.origin[0]) * self.downsample, (y + self.origin[1]) * self.downsample,
                width * self.downsample, height * self.downsample)


def _tissue_region(tissue: tissue_lib.TissueMask, downsample: float, dimensions):
    """The tissue's bounding box as (origin, shape) in processing px (None if no tissue)."""
    rows, cols = np.nonzero(tissue.mask)
    if len(rows) == 0:
        return None
    scale_x, scale_y = tissue.downsample
    full_w = int(round(dimensions[0] / downsample))
    full_h = int(round(dimensions[1] / downsample))
    x0 = max(0, int(math.floor(cols.min() * scale_x / downsample)))
    y0 = max(0, int(math.floor(rows.min() * scale_y / downsample)))
    x1 = min(full_w, int(math.ceil((cols.max() + 1) * scale_x / downsample)))
    y1 = min(full_h, int(math.ceil((rows.max() + 1) * scale_y / downsample)))
    return (x0, y0), (max(1, y1 - y0), max(1, x1 - x0))


def plan_slide(name: str, dimensions, slide_mpp: float, tissue: tissue_lib.TissueMask,
               model_mpp: float, stride: int, config) -> SlidePlan:
    """Processing resolution, region (tissue bounding box) and the tiles holding tissue.

    Args:
      name: the slide's name (ids, file names).
      dimensions: level-0 (width, height).
      slide_mpp: level-0 µm/px.
      tissue: the tissue mask.
      model_mpp: µm/px the model expects.
      stride: tile sides are rounded up to a multiple of it.
      config: `WsiConfig`.
    """
    downsample = model_mpp / slide_mpp
    tile_size = int(math.ceil(config.tile_size_px / stride) * stride)
    region = _tissue_region(tissue, downsample, dimensions)
    plan = dict(name=name, dimensions=tuple(dimensions), slide_mpp=slide_mpp,
                model_mpp=model_mpp, downsample=downsample, tile_size=tile_size)
    if region is None:
        return SlidePlan(origin=(0, 0), shape=(0, 0), tiles=(), total_tiles=0, **plan)
    origin, shape = region
    tiles = tiling.cover(shape, tile_size, config.overlap_px, config.context_px)
    draft = SlidePlan(origin=origin, shape=shape, tiles=(), total_tiles=len(tiles), **plan)
    kept = tuple(tile for tile in tiles
                 if tissue.fraction(draft.core_box(tile)) > config.min_tissue_fraction)
    return dataclasses.replace(draft, tiles=kept)


def estimate_stain(slide, plan: SlidePlan) -> Optional[stain.Stats]:
    """LAB mean/std of the slide's stained pixels, from centre crops of up to 16 tiles.

    Estimated once per slide (per-tile statistics invent nuclei on empty tiles, field-notes
    §4 #7); crops are spread evenly over the tissue tiles; glass pixels are excluded.
    """
    if not plan.tiles:
        return None
    step = max(1, len(plan.tiles) // STAIN_SAMPLES)
    stats, counts = [], []
    for tile in plan.tiles[::step][:STAIN_SAMPLES]:
        x, y, width, height = plan.core_box(tile)
        side = STAIN_SAMPLE_PX * plan.downsample
        box = (x + width / 2 - side / 2, y + height / 2 - side / 2, side, side)
        rgb = slide.read(*box, plan.downsample)
        stained = tissue_lib.optical_density(rgb) > tissue_lib.OD_MIN
        if stained.sum() >= 100:
            stats.append(stain.lab_stats(rgb, stained))
            counts.append(int(stained.sum()))
    if not stats:
        return None
    return stain.pooled_stats(stats, counts)


def resolve_stain(method: str, model, estimate) -> Optional[Tuple[stain.Stats, stain.Stats]]:
    """(source, target) Reinhard statistics, or None for no normalisation.

    Args:
      method: "auto" (as the model says), "reinhard" or "none".
      model: the `SegmentationModel` (its `stain_target`).
      estimate: () -> the slide's statistics (or None); called only when needed.

    Raises:
      ValueError: "reinhard" was asked for but the model records no target.
    """
    if method == "auto":
        method = "reinhard" if model.stain_target is not None else "none"
    if method == "none":
        return None
    if model.stain_target is None:
        raise ValueError(f"stain_norm=reinhard but the model ({model.name}) records no Reinhard "
                         f"target in its inference.json; use --stain_norm=none")
    slide_stats = estimate()
    if slide_stats is None:
        logging.warning("no stained pixels to estimate Reinhard statistics: not normalising")
        return None
    return slide_stats, model.stain_target


def read_tile(slide, plan: SlidePlan, tile: tiling.Tile, stain_pair) -> np.ndarray:
    """The tile's read window at processing resolution, stain-normalised if asked."""
    rgb = slide.read(*plan.read_box(tile), plan.downsample)
    return stain.reinhard(rgb, *stain_pair) if stain_pair is not None else rgb


def segment_tiles(slide, plan: SlidePlan, model, tissue, stain_pair, outputs, timer,
                  batch_size: int, context_px: int = 0, progress: bool = True) -> dict:
    """Runs the tiles in batches and streams each tile's nuclei to every writer in `outputs`.

    Returns:
      Summed per-tile counters (nuclei, repaired polygons, nuclei touching read edges, …).
    """
    totals = {"nuclei": 0}
    bar = tqdm.tqdm(total=len(plan.tiles), desc=plan.name, unit="tile", disable=not progress)
    for start in range(0, len(plan.tiles), batch_size):
        batch = plan.tiles[start:start + batch_size]
        with timer("read_and_stain"):
            images = np.stack([read_tile(slide, plan, tile, stain_pair) for tile in batch])
        with timer("model"):
            segmentation, detection = model.maps(images)
        for index, tile in enumerate(batch):
            with timer("postprocess"):
                labels = model.instances(segmentation[index], detection[index])
                table = nuclei_lib.tile_nuclei(
                    np.asarray(labels), images[index], segmentation[index], tile, plan.origin,
                    plan.downsample, plan.model_mpp, plan.name, tissue, context_px)
            with timer("write"):
                for output in outputs:
                    output.write(table, plan.core_box(tile))
            totals["nuclei"] += len(table)
            for key, value in table.stats.items():
                totals[key] = totals.get(key, 0) + value
        bar.update(len(batch))
    bar.close()
    return totals


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


def _algmeta_fields(plan: SlidePlan, model) -> dict:
    """Slide- and model-level fields of the TCGA algmeta JSONs (release `gen_json.py` keys)."""
    thresholds = model.info.get("thresholds", {})
    values = [thresholds.get(key, "") for key in
              ("seg_threshold", "det_threshold", "min_area_px", "max_area_px")]
    return {"subject_id": plan.name, "case_id": plan.name,
            "analysis_id": f"simgan_histo:{model.info.get('config_hash', model.name)}",
            "analysis_desc": "_".join(["simgan_histo"] + [str(v) for v in values]),
            "version": {"git_commit": model.info.get("git_commit", "unknown"),
                        "model": model.name, "model_hash": model.info.get("config_hash", "")}}


def _open_writers(paths: SlideOutputs, slide, plan, model, thumb, tissue, config):
    boxes = qc.choose_overlay_boxes(tissue, slide.dimensions, config.qc_overlays,
                                    config.qc_overlay_px)
    return [writers.GeoJsonWriter(paths.geojson), writers.MorphometryWriter(paths.morphometry),
            writers.TcgaCsvWriter(paths.tcga, slide.dimensions, plan.slide_mpp, plan.downsample,
                                  config.csv_tile_px, _algmeta_fields(plan, model)),
            qc.QcWriter(paths.folder, paths.stem, thumb, tissue, slide.dimensions, boxes)]


def preflight(path, config, backend: str = "auto") -> float:
    """Opens the slide and checks its µm/px; returns it. Cheap: run it before loading a model.

    Raises:
      reader.SlideReadError: unreadable or corrupt slide (MissingMppError: no µm/px).
    """
    with reader.open_slide(path, mpp=config.mpp, backend=backend) as slide:
        return reader.require_mpp(slide)


def segment_slide(path, model, out_dir, config, mask_dir=None,
                  roi: Optional[Sequence[float]] = None, backend: str = "auto",
                  progress: bool = True) -> dict:
    """Segments one slide; writes its outputs under `<out_dir>/<stem>/`; returns the report.

    Args:
      path: the slide (any format `reader.open_slide` reads).
      model: a `model.SegmentationModel`.
      out_dir: the output root.
      config: `WsiConfig` (`mpp` overrides the slide's µm/px).
      mask_dir: folder of tissue masks matched by file name (None: automatic Otsu mask).
      roi: level-0 (x, y, width, height) to restrict to.
      backend: slide reader backend.
      progress: show a tqdm bar.

    Raises:
      reader.SlideReadError: unreadable or corrupt slide (MissingMppError: no µm/px).
      ValueError: inconsistent settings (e.g. Reinhard without a target).
    """
    timer, started = StageTimer(), time.time()
    with timer("open"):
        slide = reader.open_slide(path, mpp=config.mpp, backend=backend)
    with slide:
        tissue, plan, stain_pair, qc_thumb = _prepare(slide, model, config, mask_dir, roi,
                                                      timer)
        paths = SlideOutputs(pathlib.Path(out_dir) / plan.name, plan.name)
        paths.folder.mkdir(parents=True, exist_ok=True)
        outputs = _open_writers(paths, slide, plan, model, qc_thumb, tissue, config)
        try:
            totals = segment_tiles(slide, plan, model, tissue, stain_pair, outputs, timer,
                                   config.batch_size, config.context_px, progress)
            with timer("write"):
                written = [output.close() for output in outputs[:3]] + outputs[3].close(slide)
        except BaseException:
            for output in outputs:
                output.abort()
            raise
        report = build_report(slide, plan, model, tissue, stain_pair, config, totals, timer,
                              started, written + [paths.report])
    writers.atomic_write_json(paths.report, report)
    logging.info("%s: %d nuclei, %.2f mm² tissue, %.2f MP/s", plan.name, report["nuclei"],
                 report["tissue_mm2"], report["mp_per_s"])
    return report


def _prepare(slide, model, config, mask_dir, roi, timer):
    """Tissue mask, plan, Reinhard statistics and the QC thumbnail of an open slide."""
    slide_mpp = reader.require_mpp(slide)
    with timer("tissue"):
        tissue = tissue_lib.slide_tissue(slide, slide_mpp, config, mask_dir, roi)
        qc_thumb = tissue_lib.thumbnail(slide, qc.thumbnail_downsample(slide.dimensions))
    plan = plan_slide(slide.path.stem, slide.dimensions, slide_mpp, tissue, model.mpp,
                      model.stride, config)
    with timer("stain_estimate"):
        stain_pair = resolve_stain(config.stain_norm, model,
                                   lambda: estimate_stain(slide, plan))
    return tissue, plan, stain_pair, qc_thumb
