"""Segment the nuclei of a whole slide: tiles, task net, watershed, GeoJSON / CSV / QC outputs.

Usage: python segment_wsi.py --slides=slide.svs --out=out/ [--model=runs/demo/export]
"""

from absl import app
from absl import flags
from absl import logging

from flags import common
from flags import wsi as wsi_flags

flags.adopt_module_key_flags(common)
flags.adopt_module_key_flags(wsi_flags)

FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        roi = wsi_flags.parse_roi(FLAGS.roi)
        config = wsi_flags.to_config(FLAGS)
    except ValueError as error:
        raise app.UsageError(str(error)) from error

    # pylint: disable=import-outside-toplevel
    from simgan_histo.wsi import reader, segment
    try:  # a missing, corrupt or scale-less slide fails before TensorFlow and the model load
        segment.preflight(FLAGS.slides, config.wsi)
    except reader.SlideReadError as error:
        logging.error("%s", error)
        return 2
    from simgan_histo import tf_setup
    tf_setup.configure(config.runtime)
    from simgan_histo.wsi import model as model_lib

    try:
        model = model_lib.from_export(FLAGS.model)
        report = segment.segment_slide(FLAGS.slides, model, FLAGS.out, config.wsi,
                                       mask_dir=FLAGS.mask_dir, roi=roi)
    except (reader.SlideReadError, FileNotFoundError, ValueError) as error:
        logging.error("%s", error)
        return 2
    logging.info("%d nuclei on %.2f mm² of tissue (%.2f MP/s); outputs:\n  %s",
                 report["nuclei"], report["tissue_mm2"], report["mp_per_s"],
                 "\n  ".join(report["outputs"]))
    return 0


if __name__ == "__main__":
    flags.mark_flags_as_required(["slides", "out"])
    app.run(main)
