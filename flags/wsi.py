"""Flags of `segment_wsi.py`: which slides, which model, where outputs go, resolution, tiles,
the engine.

`to_config` applies them over the preset (flags/common.py order); `--mpp`, `--stain_norm`,
`--tile_size`, `--overlap`, `--engine` and `--workers` land in the config, the rest are
arguments of the batch driver (`simgan_histo.wsi.batch.run_batch`). `--mpp`, `--out` and
`--workers` are defined once, in flags/shared.py.
"""

from typing import Optional, Tuple

from absl import flags

from flags import common
from flags import shared
from simgan_histo import config as config_lib

SLIDES = flags.DEFINE_string(
    "slides", None, "Slides to segment: comma-separated files, globs (quote them; ** recurses) "
    "or folders (their slide and image files), e.g. 'cohort/*.svs,extra/'. Sorted, duplicates "
    "removed. Any OpenSlide format, pyramidal/OME TIFF, or a plain PNG/JPEG image.")
MODEL = flags.DEFINE_string(
    "model", "runs/demo/export",
    "Exported task model: <dir> (newest version) or <dir>/<version>; its inference.json gives "
    "the µm/px, Reinhard target and watershed thresholds. Default: the README main job's.")
OUT, MPP, WORKERS = shared.OUT, shared.MPP, shared.WORKERS
for _name in ("out", "mpp", "workers"):
    flags.declare_key_flag(_name)
MASK_DIR = flags.DEFINE_string(
    "mask_dir", None, "Folder of tissue masks named like the slides (<name>.png, any "
    "resolution with the slide's aspect ratio; non-zero = tissue). Default: Otsu.")
ROI = flags.DEFINE_string(
    "roi", None, "Only this level-0 box: x,y,width,height (px), e.g. 10000,8000,4096,4096.")
STAIN_NORM = flags.DEFINE_enum(
    "stain_norm", "auto", ["auto", "reinhard", "none"],
    "Reinhard normalisation to the model's target with statistics estimated once per slide; "
    "auto = as the model's inference.json says.")
TILE_SIZE = flags.DEFINE_integer(
    "tile_size", None, "Tile side at the model's µm/px (default: the preset's).")
OVERLAP = flags.DEFINE_integer(
    "overlap", None, "Overlap between tiles, px at the model's µm/px; must exceed the "
    "largest nucleus (default: the preset's).")
SKIP_ERRORS = flags.DEFINE_bool(
    "skip_errors", False, "Go on past a slide that fails (corrupt file, no µm/px, …), write "
    "<out>/failures.json and exit with status 1 at the end; default: stop at the first failure.")
ENGINE = flags.DEFINE_enum(
    "engine", None, ["local", "dask"],
    "local = this process; dask = slides and chunks of tiles as Dask tasks, on --scheduler or "
    "a LocalCluster of --workers processes (needs dask[distributed]). Default: the preset's.")
SCHEDULER = flags.DEFINE_string(
    "scheduler", None, "Dask scheduler address (e.g. tcp://10.0.0.5:8786, or a dask-jobqueue "
    "cluster's) for --engine=dask; workers must see --out and the slides at the same paths.")

WSI_OVERRIDES = {
    "mpp": ("wsi", "mpp"),
    "stain_norm": ("wsi", "stain_norm"),
    "tile_size": ("wsi", "tile_size_px"),
    "overlap": ("wsi", "overlap_px"),
    "engine": ("wsi", "engine"),
    **shared.WORKERS_OVERRIDE,
}


def to_config(flag_values: flags.FlagValues) -> config_lib.Config:
    """The preset, then the common flags, then the whole-slide flags the user set."""
    return common.to_config(flag_values, WSI_OVERRIDES)


def parse_roi(text: Optional[str]) -> Optional[Tuple[int, int, int, int]]:
    """`"x,y,w,h"` -> (x, y, w, h) ints; None for None; ValueError naming the flag otherwise."""
    if text is None:
        return None
    parts = text.split(",")
    try:
        values = tuple(int(part) for part in parts)
    except ValueError:
        values = ()
    if len(values) != 4 or values[2] <= 0 or values[3] <= 0 or min(values[:2]) < 0:
        raise ValueError(f"--roi={text!r}: expected x,y,width,height in level-0 px "
                         f"(integers, width and height > 0)")
    return values
