"""Flags of `train_refiner.py`: tissue, run length, the ablation switches."""

import dataclasses

from absl import flags

from flags import common
from flags import shared

REF_DIR = flags.DEFINE_string(
    "ref_dir", None, "Real H&E tissue: a folder of images/slides or one file. "
    "Default: the CC0 sample slide (fetched on first use).")
MPP = shared.MPP  # µm/px of the tissue files (defined once, in flags/shared.py)
flags.declare_key_flag("mpp")
MAX_TILES = flags.DEFINE_integer("max_tiles", None, "Use at most this many tissue tiles.")
ITERATIONS = flags.DEFINE_integer(
    "iterations", None, "Stop after this many schedule iterations (default: the whole schedule).")
MAX_MINUTES = flags.DEFINE_float(
    "max_minutes", None, "Also stop after this much wall time, with a checkpoint and the "
    "exports; the same command later continues the schedule.")
IMPORTANCE_WEIGHTS = shared.IMPORTANCE_WEIGHTS  # -> GanTrainConfig.use_importance_weights
flags.declare_key_flag("importance_weights")
HARD_EXAMPLES = flags.DEFINE_bool(
    "hard_examples", True, "Include L_hard = -L_task in the refiner's loss (off = ablation).")
REFERENCE = flags.DEFINE_bool(
    "reference", True, "Condition G and D on the reference patch (off = ablation).")
BATCH_SIZE = flags.DEFINE_integer("batch_size", None, "Synthetic patches per refiner step.")

MAPPING = {
    "importance_weights": ("gan", "use_importance_weights"),
    "hard_examples": ("gan", "use_hard_examples"),
    "batch_size": ("gan", "batch_size"),
}


def to_config(flag_values):
    config = common.to_config(flag_values, MAPPING)
    if flag_values["reference"].present:
        use = flag_values["reference"].value
        config = dataclasses.replace(
            config, refiner=dataclasses.replace(config.refiner, use_reference=use),
            discriminator=dataclasses.replace(config.discriminator, use_reference=use))
    return config
