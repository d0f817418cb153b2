"""simgan_histo: label-free nucleus segmentation for H&E histopathology.

Importing the package does not import TensorFlow (synthesis workers and `--help` stay
fast); the modules that need it import it themselves.
"""

import os

# TF's C++ start-up banners (cuInit on CPU-only machines, oneDNN notices) are noise for our
# users; an explicit setting by the user wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

__version__ = "0.1.0"


def load(path, **overrides):
    """Loads an exported task model: `simgan_histo.load(dir).predict_instances(rgb, mpp=...)`.

    See `simgan_histo.api.load` for the arguments. TensorFlow is imported here, on first use,
    not when the package is imported.
    """
    from simgan_histo import api  # pylint: disable=import-outside-toplevel

    return api.load(path, **overrides)
