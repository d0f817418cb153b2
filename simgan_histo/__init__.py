"""simgan_histo: label-free nucleus segmentation for H&E histopathology.

Importing the package does not import TensorFlow (synthesis workers and `--help` stay
fast); the modules that need it import it themselves.
"""

import os

# TF's C++ start-up banners (cuInit on CPU-only machines, oneDNN notices) are noise for our
# users; an explicit setting by the user wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

__version__ = "0.1.0"
