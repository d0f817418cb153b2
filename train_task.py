"""Train the nucleus task net from patch files and/or real labels, export a SavedModel.

Usage: python train_task.py --patches=patches.h5 --workdir=runs/task [--real_dir=DIR]
"""

import os

from absl import app
from absl import flags
from absl import logging

from flags import common
from flags import task as task_flags

flags.adopt_module_key_flags(common)
flags.adopt_module_key_flags(task_flags)

FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    patches = task_flags.patch_paths(FLAGS)
    if not patches and not FLAGS.real_dir:
        raise app.UsageError("give --patches=FILE.h5 and/or --real_dir=DIR")
    missing = [path for path in patches if not os.path.exists(path)]
    if missing:  # fail before the TensorFlow import: seconds, not a minute on a busy machine
        logging.error("patch file not found: %s", ", ".join(missing))
        return 2
    if FLAGS.init_weights and not os.path.exists(FLAGS.init_weights):
        logging.error("--init_weights file not found: %s", FLAGS.init_weights)
        return 2
    config = task_flags.to_config(FLAGS)

    from simgan_histo import tf_setup  # pylint: disable=import-outside-toplevel
    tf_setup.configure(config.runtime)
    from simgan_histo.training import task_trainer  # pylint: disable=import-outside-toplevel

    logging.info("config %s (hash %s)", config.preset, config.hash())
    try:
        result = task_trainer.train_task(
            config, FLAGS.workdir, patch_paths=patches, real_dir=FLAGS.real_dir,
            validation=FLAGS.validation, rescore_with=FLAGS.rescore_with,
            export_dir=FLAGS.export_dir, init_weights=FLAGS.init_weights)
    except (FileNotFoundError, ValueError) as error:
        logging.error("%s", error)
        return 2
    logging.info("exported %s; selection %s", result["export"], result["selection"])
    return 0


if __name__ == "__main__":
    flags.mark_flags_as_required(["workdir"])
    app.run(main)
