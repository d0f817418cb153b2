"""The README's main job: the label-free pipeline on the default tissue (the CC0 sample slide).

Usage: python demo.py [--workdir=runs/demo] [--slide=PATH]
"""

from absl import app
from absl import flags

from flags import common
from flags import demo as demo_flags
from simgan_histo import tf_setup

flags.adopt_module_key_flags(common)
flags.adopt_module_key_flags(demo_flags)

FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    config = common.to_config(FLAGS)
    workdir = FLAGS.workdir or "runs/demo"
    tf_setup.configure(config.runtime)
    from simgan_histo import demo as demo_lib  # pylint: disable=import-outside-toplevel

    summary = demo_lib.run(config, workdir, slide=demo_flags.SLIDE.value)
    print(f"\nSegmented {summary['slide']}: {summary['nuclei']} nuclei.")
    print("Outputs (QuPath GeoJSON, TCGA-style CSVs, morphometry, QC images, report):")
    for path in summary["outputs"]:
        print(f"  {path}")
    print(f"SavedModel (TF Serving layout, with assets/inference.json): {summary['export']}")
    print(f"TensorBoard: tensorboard --logdir {summary['tensorboard']}")
    return 0


if __name__ == "__main__":
    FLAGS.set_default("preset", "demo")
    app.run(main)
