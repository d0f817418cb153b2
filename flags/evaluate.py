"""Flags of `evaluate.py`: the prediction and ground-truth folders, the JSON output."""

from absl import flags

PRED = flags.DEFINE_string(
    "pred", None, "Folder of predicted instance masks (uint16 PNG/TIFF, 0 = background), "
    "named like the ground truth.")
GT = flags.DEFINE_string(
    "gt", None, "Folder of ground-truth instance masks (e.g. monuseg2018/test/labels).")
JSON = flags.DEFINE_string(
    "json", None, "Also write the metrics JSON here ({mean, pooled, per_image, n_images}).")
