"""Train the reference-conditioned refiner and discriminator, filling the HDF5 history buffer.

Usage: python train_refiner.py --ref_dir=tiles/ --workdir=runs/refiner [--preset=cpu_small]
"""

import json

from absl import app
from absl import flags
from absl import logging

from flags import common
from flags import refiner as refiner_flags
from simgan_histo import sample_data
from simgan_histo import tf_setup

flags.adopt_module_key_flags(common)
flags.adopt_module_key_flags(refiner_flags)
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    config = refiner_flags.to_config(FLAGS)
    tf_setup.configure(config.runtime)
    from simgan_histo import synthesis  # pylint: disable=import-outside-toplevel
    from simgan_histo.training import refiner_run  # pylint: disable=import-outside-toplevel
    from simgan_histo.training import refiner_trainer  # pylint: disable=import-outside-toplevel

    minutes = refiner_flags.MAX_MINUTES.value
    try:
        tissue = refiner_flags.REF_DIR.value or str(sample_data.sample_slide_path())
        source = synthesis.TissueSource.from_paths(tissue, config.synthesis,
                                                   mpp=refiner_flags.MPP.value,
                                                   max_tiles=refiner_flags.MAX_TILES.value)
        logging.info("tissue: %s", source.summary())
        summary = refiner_run.train_refiner(config, FLAGS.workdir, source,
                                            num_iterations=refiner_flags.ITERATIONS.value,
                                            max_seconds=60 * minutes if minutes else None)
    except (refiner_trainer.NonFiniteLossError, FileNotFoundError, ValueError) as error:
        logging.error("%s", error)  # the message says what to do; no traceback
        return 1
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    flags.mark_flags_as_required(["workdir"])
    app.run(main)
