"""Instance masks for a folder of images with an exported model (or the classical baseline).

Usage: python predict.py --model=export/ --images=imgs/ --out=pred/ [--mpp=0.25]
"""

from absl import app
from absl import flags
from absl import logging

from flags import common
from flags import predict as predict_flags

flags.adopt_module_key_flags(common)
flags.adopt_module_key_flags(predict_flags)

FLAGS = flags.FLAGS


def _segmenter():
    """(rgb, mpp) -> labels for --method, and the µm/px to pass it."""
    if FLAGS.method == "classical":
        from simgan_histo.evaluation import baseline  # pylint: disable=import-outside-toplevel
        return baseline.segment, FLAGS.mpp or baseline.DEFAULT_MPP
    from simgan_histo import tf_setup  # pylint: disable=import-outside-toplevel
    tf_setup.import_tensorflow()
    from simgan_histo import api  # pylint: disable=import-outside-toplevel
    model = api.load(FLAGS.model, **predict_flags.load_overrides(FLAGS))
    logging.info("%s: mpp %s, thresholds %s", model.name, model.settings.mpp,
                 model.settings.thresholds)
    return model.predict_labels, FLAGS.mpp


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from simgan_histo.evaluation import predict_lib  # pylint: disable=import-outside-toplevel
    try:
        segment, mpp = _segmenter()
        summary = predict_lib.predict_folder(segment, FLAGS.images, FLAGS.out, mpp)
    except (FileNotFoundError, ValueError) as error:
        logging.error("%s", error)
        return 2
    counts = summary["nuclei"].values()
    logging.info("wrote %d masks to %s (%d nuclei)", summary["images"], FLAGS.out, sum(counts))
    return 0


if __name__ == "__main__":
    flags.mark_flags_as_required(["images", "out"])
    app.run(main)
