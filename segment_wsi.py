"""Segment whole slides

Usage:  tiles, task net, watershed, GeoJSON / CSV / QC outputs.:python segment_wsi.py --slides=slides/ --out=out/ [--model=export/]
"""

from absl import app
from absl import flags

from flags import common

flags.adopt_module_key_flags(common)

FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
      raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    raise app.UsageError("not implemented yet (tracked in issue 7)")


if __name__ == "__main__":
    app.run(main)
