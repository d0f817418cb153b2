"""Flags of `synthesize.py`. The tissue flags (--ref_dir, --mpp, --max_tiles) mean the same
as for `train_refiner.py` and are defined once, in `flags/refiner.py` (--mpp, with --out and
--workers, in `flags/shared.py`)."""

from absl import flags

from flags import common
from flags import refiner
from flags import shared

REF_DIR, MPP, MAX_TILES = refiner.REF_DIR, refiner.MPP, refiner.MAX_TILES
OUT, WORKERS = shared.OUT, shared.WORKERS  # --out: the patch file (HDF5, DESIGN §3 schema)
NUM = flags.DEFINE_integer("num", 1000, "Number of patches to write.", lower_bound=1)
PATCH_SIZE = flags.DEFINE_integer(
    "patch_size", None, "Patch side, px at the synthesis µm/px (default: the preset's).")
PREVIEW = flags.DEFINE_string(
    "preview", None, "Also write a PNG grid of the first patches: patch | mask contours | "
    "reference.")

MAPPING = {
    "patch_size": ("synthesis", "patch_size"),
    **shared.WORKERS_OVERRIDE,
}
KEY_FLAGS = ("ref_dir", "mpp", "max_tiles", "out", "workers")
for _name in KEY_FLAGS:
    flags.declare_key_flag(_name)


def to_config(flag_values):
    """Preset, then --seed/--precision, then --patch_size/--workers if the user set them."""
    return common.to_config(flag_values, MAPPING)
