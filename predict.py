"""Instance masks for a folder of images with an exported model.

Usage: python predict.py --model=export/ --images=imgs/ --out=pred/
"""

from absl import app
from absl import flags

from flags import common

flags.adopt_module_key_flags(common)

FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
      raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    raise app.UsageError("not implemented yet (tracked in issue 4)")


if __name__ == "__main__":
    app.run(main)
