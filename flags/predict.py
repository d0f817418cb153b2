"""Flags of `predict.py`: images in, instance masks out, and overrides of inference.json.

`--model`, `--stain_norm`, `--tile_size` and `--overlap` are the flags `segment_wsi.py`
defines (flags/wsi.py), `--out` and `--mpp` are shared (flags/shared.py); each flag is
defined once. This module adds the
image folder, the method and the watershed overrides. A flag the user did not set leaves the
export's inference.json value in force.
"""

from typing import Dict

from absl import flags

from flags import wsi as wsi_flags

IMAGES = flags.DEFINE_string(
    "images", None, "Folder of RGB images (png, tif, jpg, bmp); one mask per image is written "
    "to --out with the same file name (uint16 PNG instance ids, 0 = background).")
METHOD = flags.DEFINE_enum(
    "method", "model", ["model", "classical"],
    "model = the export at --model; classical = the Otsu-on-hematoxylin + distance-watershed "
    "baseline (no model; --mpp default 0.25).")
SEG_THRESHOLD = flags.DEFINE_float(
    "seg_threshold", None, "Foreground probability threshold (default: inference.json).")
DET_THRESHOLD = flags.DEFINE_float(
    "det_threshold", None, "Seed (detection) probability threshold (default: inference.json).")
SEG_SIGMA = flags.DEFINE_float(
    "seg_sigma", None, "Gaussian σ on the segmentation map, px (default: inference.json).")
DET_SIGMA = flags.DEFINE_float(
    "det_sigma", None, "Gaussian σ on the detection map, px (default: inference.json).")
MIN_AREA = flags.DEFINE_integer(
    "min_area_px", None, "Smallest nucleus kept, px at the model's µm/px (default: "
    "inference.json).")
MAX_AREA = flags.DEFINE_integer(
    "max_area_px", None, "Largest nucleus kept, px at the model's µm/px (default: "
    "inference.json).")
COMPACTNESS = flags.DEFINE_float(
    "compactness", None, "Watershed compactness (default: inference.json).")
FLOOD_ON = flags.DEFINE_enum(
    "flood_on", None, ["segmentation", "detection", "hv", "distance"],
    "The map the watershed floods (default: inference.json); hv needs a model trained with "
    "the hv head.")

MIN_HEMATOXYLIN = flags.DEFINE_float(
    "min_hematoxylin", None, "Drop nuclei whose mean hematoxylin optical density on the "
    "normalised image is below this; 0 keeps all (default: inference.json).")
MERGE_SOLIDITY = flags.DEFINE_float(
    "merge_solidity", None, "Merge touching nuclei whose union's solidity (area ÷ convex hull "
    "area) is at least this; 0 = off (default: inference.json).")
SEED_H = flags.DEFINE_float(
    "seed_h", None, "> 0: seed the watershed at the h-maxima (this height, px) of the "
    "foreground's distance transform instead of the detection map; 0 = detection seeds "
    "(default: inference.json).")
DISTANCE_FILL_HOLES = flags.DEFINE_bool(
    "distance_fill_holes", None, "Take the distance transform (of distance seeds and the "
    "distance flood) of the foreground with its holes filled, so a nucleus with a pale "
    "interior is not split around it; may merge nuclei whose neck holds a hole "
    "(default: inference.json).")

# Field names of `postprocess.watershed.Thresholds` (flags/ imports no library module).
THRESHOLD_FLAGS = ("seg_threshold", "det_threshold", "seg_sigma", "det_sigma", "min_area_px",
                   "max_area_px", "compactness", "flood_on", "min_hematoxylin", "merge_solidity",
                   "seed_h", "distance_fill_holes")
# Reused from flags/wsi.py and flags/shared.py; key flags of this module, so a script that
# adopts this module's key flags shows them in --help.
SHARED = ("model", "out", "mpp", "stain_norm", "tile_size", "overlap")
MODEL, OUT, MPP = wsi_flags.MODEL, wsi_flags.OUT, wsi_flags.MPP
for _name in SHARED:
    flags.declare_key_flag(_name)


def load_overrides(flag_values: flags.FlagValues) -> Dict:
    """Keyword arguments of `simgan_histo.api.load` for the flags the user set."""
    thresholds = {name: flag_values[name].value for name in THRESHOLD_FLAGS
                  if flag_values[name].present}
    overrides = {"thresholds": thresholds}
    if flag_values["stain_norm"].value != "auto":
        overrides["stain_norm"] = flag_values["stain_norm"].value
    if flag_values["tile_size"].value is not None:
        overrides["tile_size_px"] = flag_values["tile_size"].value
    if flag_values["overlap"].value is not None:
        overrides["overlap_px"] = flag_values["overlap"].value
    return overrides
