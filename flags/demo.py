"""Flags of `demo.py`, the README's main job."""

from absl import flags

SLIDE = flags.DEFINE_string(
    "slide", None, "Tissue slide or image; default: the CC0 sample slide, fetched on first use.")
