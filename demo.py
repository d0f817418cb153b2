"""The README's main job: the label-free pipeline on the default tissue (the CC0 sample slide).

Usage: python demo.py [--workdir=runs/demo] [--slide=PATH]
"""

from absl import app
from absl import flags

from flags import common
from simgan_histo import demo as demo_lib

flags.adopt_module_key_flags(common)

SLIDE = flags.DEFINE_string(
    "slide", None, "Tissue slide or image; default: the CC0 sample slide, fetched on first use.")

FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    config = common.to_config(FLAGS)
    workdir = FLAGS.workdir or "runs/demo"
    summary = demo_lib.run(config, workdir, slide=SLIDE.value)
    slide = summary["slide"]
    print(f"Tissue: {slide['path']} ({slide['dimensions'][0]}x{slide['dimensions'][1]} px "
          f"at {slide['mpp_x']:.3f} um/px)")
    print(f"Run folder: {summary['workdir']} (config.json)")
    return 0


if __name__ == "__main__":
    FLAGS.set_default("preset", "demo")
    app.run(main)
