"""Metrics (Dice1, Dice2, AJI, AJI+, PQ) of predicted instance masks against ground truth.

Usage: python evaluate.py --pred=pred/ --gt=labels/ [--json=metrics.json]
"""

import sys

from absl import app
from absl import flags
from absl import logging

from flags import common
from flags import evaluate as evaluate_flags

flags.adopt_module_key_flags(common)
flags.adopt_module_key_flags(evaluate_flags)

FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from simgan_histo.evaluation import metrics  # pylint: disable=import-outside-toplevel
    from simgan_histo.evaluation import predict_lib  # pylint: disable=import-outside-toplevel
    try:
        summary = predict_lib.evaluate_folder(FLAGS.pred, FLAGS.gt)
    except (FileNotFoundError, ValueError) as error:
        logging.error("%s", error)
        return 2
    sys.stdout.write(metrics.format_table(summary) + "\n")
    if FLAGS.json:
        predict_lib.write_json(FLAGS.json, summary)
        logging.info("metrics written to %s", FLAGS.json)
    return 0


if __name__ == "__main__":
    flags.mark_flags_as_required(["pred", "gt"])
    app.run(main)
