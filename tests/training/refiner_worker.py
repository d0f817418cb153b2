"""Subprocess entry for the refiner-trainer tests (determinism and devices are per process).

Usage: python -m tests.training.refiner_worker WORKDIR TISSUE ITERATIONS [--mirrored]
       [--no_prefetch]
Runs `train_refiner` at the `tiny` preset under op determinism and prints its summary as
JSON on the last line; the tests read the checkpoints, events and buffer it leaves.
"""

import json
import sys


def main(argv):
    workdir, tissue, iterations = argv[1], argv[2], int(argv[3])
    mirrored = "--mirrored" in argv
    from simgan_histo import tf_setup

    tf = tf_setup.import_tensorflow()
    if mirrored:  # logical devices must exist before TF initialises its runtime
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    tf.config.experimental.enable_op_determinism()
    from simgan_histo import config as config_lib
    from simgan_histo import synthesis
    from simgan_histo.training import refiner_run

    config = config_lib.tiny()
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]) if mirrored else None
    source = synthesis.TissueSource.from_paths(tissue, config.synthesis, mpp=0.25)
    summary = refiner_run.train_refiner(config, workdir, source, num_iterations=iterations,
                                        strategy=strategy, export=not mirrored,
                                        prefetch="--no_prefetch" not in argv)
    print(json.dumps(summary))


if __name__ == "__main__":
    main(sys.argv)
