"""Flags of `train_task.py`: training data, weights, validation, steps, export."""

from typing import List

from absl import flags

from flags import common
from flags import shared
from simgan_histo import config as config_lib

PATCHES = flags.DEFINE_multi_string(
    "patches", [], "Patch file(s) of the DESIGN §3 schema (synthesize.py output or the "
    "refiner's buffer); repeat the flag or give a comma-separated list.")
REAL_DIR = flags.DEFINE_string(
    "real_dir", None, "Real labeled folder (images/<id>.png RGB, labels/<id>.png uint16 "
    "instance ids) mixed into every batch, or used alone for a supervised model.")
IMPORTANCE_WEIGHTS = shared.IMPORTANCE_WEIGHTS  # -> TaskConfig.use_importance_weights
flags.declare_key_flag("importance_weights")
RESCORE_WITH = flags.DEFINE_string(
    "rescore_with", None, "Exported discriminator (SavedModel dir) to recompute the patch "
    "weights with before training (weights written during D's warm-up are stale).")
INIT_WEIGHTS = flags.DEFINE_string(
    "init_weights", None, "Keras weights of the same task net to start from, e.g. the GAN's "
    "<refiner workdir>/export/task_net.weights.h5 (ignored when resuming).")
STEPS = flags.DEFINE_integer("steps", None, "Training steps (default: the preset's).")
EXPORT_DIR = flags.DEFINE_string(
    "export_dir", None, "Model folder for the SavedModel versions (default <workdir>/export).")
VALIDATION = flags.DEFINE_string(
    "validation", "synthetic", "Where the stopping point and watershed thresholds are "
    "selected: 'synthetic' (held-out patches, zero labels), 'patches:<file>' (every patch of "
    "another synthetic patch file, zero labels), 'labeled:<dir>' or 'none'.")
ARCHITECTURE = flags.DEFINE_enum(
    "task_architecture", None, ["unet", "cnn15"],
    "Task net: the released U-Net, or our reconstruction of the paper's 15-conv CNN.")

TASK_OVERRIDES = {
    "steps": ("task", "train_steps"),
    "task_architecture": ("task", "architecture"),
}


def patch_paths(flag_values=flags.FLAGS) -> List[str]:
    """--patches values, comma lists split, empty entries dropped."""
    return [part.strip() for value in flag_values["patches"].value
            for part in value.split(",") if part.strip()]


def to_config(flag_values=flags.FLAGS) -> config_lib.Config:
    """Preset -> common flags -> the task flags the user set."""
    config = common.to_config(flag_values, TASK_OVERRIDES)
    if flag_values["importance_weights"].present:
        config = config.replace(
            task=dict(use_importance_weights=bool(flag_values["importance_weights"].value)))
    return config
