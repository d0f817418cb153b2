"""Train the reference-conditioned refiner and discriminator, filling the HDF5 history buffer.

Usage: python train_refiner.py --ref_dir=tiles/ --workdir=runs/refiner [--preset=cpu_small]
"""

from absl import app
from absl import flags

from flags import common

flags.adopt_module_key_flags(common)

FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
      raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    raise app.UsageError("not implemented yet (tracked in issue 5/6)")


if __name__ == "__main__":
    app.run(main)
