"""Synthesise GAN-free training patches (paper Fig. 3) into an HDF5 patch file.

Usage: python synthesize.py --ref_dir=tiles/ --out=patches.h5 --num=1000
"""

from absl import app
from absl import flags

from flags import common

flags.adopt_module_key_flags(common)

FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
      raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    raise app.UsageError("not implemented yet (tracked in issue 3)")


if __name__ == "__main__":
    app.run(main)
