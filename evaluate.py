"""Metrics (Dice1, Dice2, AJI, AJI+, PQ) of predicted instance masks against ground truth.

Usage: python evaluate.py --pred=pred/ --gt=labels/ [--json=metrics.json]
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
