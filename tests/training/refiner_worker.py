"""Subprocess entry for the refiner-trainer tests (determinism and devices are per process).

Usage: python -m tests.training.refiner_worker WORKDIR TISSUE ITERATIONS [--mirrored]
Writes WORKDIR/final_weights.npz with every variable of G, D and the task net.
"""

import sys

import numpy as np


def main(argv):
    workdir, tissue, iterations = argv[1], argv[2], int(argv[3])
    mirrored = "--mirrored" in argv
    import tensorflow as tf

    if mirrored:
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
                                        strategy=strategy)
    trainer_vars = {}
    from simgan_histo.training import refiner_trainer
    trainer = refiner_trainer.RefinerTrainer(config, workdir, strategy)
    trainer.restore_or_initialize()
    for name, model in (("refiner", trainer.refiner), ("discriminator", trainer.discriminator),
                        ("task_net", trainer.task_net)):
        for index, variable in enumerate(model.weights):
            trainer_vars[f"{name}/{index}"] = variable.numpy()
    np.savez(f"{workdir}/final_weights.npz", **trainer_vars)
    print("SUMMARY", summary)


if __name__ == "__main__":
    main(sys.argv)
