"""Flags of `segment_wsi.py`: which slide, which model, where outputs go, resolution, tiles.

`to_config` applies them over the preset (flags/common.py order); `--mpp`, `--stain_norm`,
`--tile_size`, `--overlap` land in `WsiConfig`, the rest are arguments of `segment_slide`.
"""

from typing import Optional, Tuple

from absl import flags

from flags import common
from simgan_histo import config as config_lib

SLIDES = flags.DEFINE_string(
    "slides", None, "The slide to segment (any OpenSlide format, pyramidal/OME TIFF, or a "
    "plain PNG/JPEG image).")
MODEL = flags.DEFINE_string(
    "model", "runs/demo/export",
    "Exported task model: <dir> (newest version) or <dir>/<version>; its inference.json gives "
    "the µm/px, Reinhard target and watershed thresholds. Default: the README main job's.")
OUT = flags.DEFINE_string(
    "out", None, "Output root; each slide writes <out>/<slide name>/ (GeoJSON, TCGA CSVs, "
    "morphometry CSV, QC images, report).")
MPP = flags.DEFINE_float(
    "mpp", None, "Level-0 µm/px of the slide, overriding (or standing in for) its metadata.")
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

WSI_OVERRIDES = {
    "mpp": ("wsi", "mpp"),
    "stain_norm": ("wsi", "stain_norm"),
    "tile_size": ("wsi", "tile_size_px"),
    "overlap": ("wsi", "overlap_px"),
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
