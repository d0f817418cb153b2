"""Speed of one joint GAN iteration (K_g refiner, K_d discriminator, K_task task-net updates).

Usage: python benchmarks/train_step.py [--preset=cpu_small] [--rounds=5] [--iterations=3]
       [--tissue=../shared/datasets/monuseg2018/train/images --mpp=0.25 --max_tiles=4]

The trainer's own loop body (`refiner_run.TrainingLoop.iterate`, buffer pushes and history
reads included; summaries and checkpoints excluded) runs on consecutive joint-phase iterations,
for float32 and mixed_bfloat16 (one trainer each, built under its Keras policy), in three
input modes, interleaved in every round:

- `pipeline`: as `train_refiner` runs it — real synthesis, next iteration prefetched on a
  worker thread (`gan_data.GanInputs(prefetch=True)`);
- `no_prefetch`: real synthesis on the critical path;
- `cached`: the same batches, synthesised before the timer (pure functions of their keys).

Per mode the first iteration of each round is a warm-up (it fills the prefetch pipeline);
the median per-iteration time over the rest and over the rounds is reported.
`input_overhead` = pipeline ÷ cached − 1. FLOPs: forward FLOPs per sample from the graph
profiler (`models/flops.py`), a trained network ≈ 3× forward, a network only
differentiated to its input ≈ 2×, with the counts of what `iterate` runs (see
`joint_gflop`). `mfu` = model GFLOP/s ÷ matmul GFLOP/s of the same precision, measured in
the same rounds (2048² matmuls). `profile`: each network's forward pass and training step
alone, in GFLOP/s and as a fraction of that matmul rate. Last stdout line: one JSON object.
"""

import json
import os
import pathlib
import statistics
import sys
import tempfile
import time

from absl import app
from absl import flags
from absl import logging

sys.path.insert(0, ".")  # run from the checkout

from simgan_histo import config as config_lib  # noqa: E402
from simgan_histo import tf_setup  # noqa: E402
import same_run  # noqa: E402  (benchmarks/ is first on the path)

FLAGS = flags.FLAGS
flags.DEFINE_string("preset", "cpu_small", "Preset whose joint iteration is timed.")
flags.DEFINE_list("precisions", list(config_lib.PRECISIONS), "Precisions to time.")
flags.DEFINE_integer("rounds", 5, "Interleaved rounds (medians reported).")
flags.DEFINE_integer("iterations", 3, "Timed iterations per mode and round (+1 warm-up).")
flags.DEFINE_string("tissue", "../shared/datasets/monuseg2018/train/images", "Real tissue.")
flags.DEFINE_float("mpp", 0.25, "µm/px of the tissue files.")
flags.DEFINE_integer("max_tiles", 4, "Tissue tiles to prepare.")

MODES = ("pipeline", "no_prefetch", "cached")


def joint_gflop(config) -> dict:
    """GFLOP of one joint iteration as `TrainingLoop.iterate` runs it (module docstring)."""
    from simgan_histo.models import discriminator, flops, refiner, unet
    size = config.synthesis.patch_size
    pair = [(1, size, size, 3)] * 2
    g = flops.forward_flops(refiner.build_refiner(config.refiner), pair) / 1e9
    d = flops.forward_flops(discriminator.build_discriminator(config.discriminator), pair) / 1e9
    t = flops.forward_flops(unet.build_unet(config.task), [(1, size, size, 3)]) / 1e9
    gan, batch = config.gan, config.gan.batch_size
    fresh = batch - int(round(batch * gan.history_fraction))
    refiner_step = batch * (3 * g + 2 * d + (2 * t if gan.use_hard_examples else 0.0))
    push = batch * d  # importance weights of the pushed patches
    d_step = 2 * batch * 3 * d  # real pairs + fakes (fresh from the refiner step + history)
    task_step = fresh * g + batch * ((d if gan.use_importance_weights else 0.0) + 3 * t)
    total = gan.k_g * refiner_step + push + gan.k_d * d_step + gan.k_task * task_step
    return {"refiner_forward_gflop": g, "discriminator_forward_gflop": d,
            "task_forward_gflop": t, "joint_iteration_gflop": total}


def network_profile(tf, config, flop: dict, matmul_rate: float, repeats: int = 5) -> dict:
    """Where a joint iteration's time goes: per network, ms and GFLOP/s of a forward pass and
    of a standalone training step (Adam on a mean-square loss; ≈ 3× the forward FLOPs) at the
    preset's batch and patch size, and each rate ÷ the same-run matmul rate."""
    import keras
    from simgan_histo.models import discriminator, refiner, unet
    size, batch = config.synthesis.patch_size, config.gan.batch_size
    image = tf.random.uniform((batch, size, size, 3), -1.0, 1.0)
    nets = {"refiner": (refiner.build_refiner(config.refiner), [image, image]),
            "discriminator": (discriminator.build_discriminator(config.discriminator),
                              [image, image]),
            "task_net": (unet.build_unet(config.task), image)}
    profile = {}
    for name, (model, inputs) in nets.items():
        gflop = batch * flop[f"{name.split('_')[0]}_forward_gflop"]
        optimizer = keras.optimizers.Adam(1e-4)

        def loss_of(outputs):
            outputs = outputs["logits"] if isinstance(outputs, dict) else outputs
            return tf.reduce_mean(tf.square(tf.cast(outputs, tf.float32)))

        @tf.function
        def train(model=model, inputs=inputs, optimizer=optimizer):
            with tf.GradientTape() as tape:
                loss = loss_of(model(inputs, training=True))
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
            return loss

        @tf.function
        def forward(model=model, inputs=inputs):
            return loss_of(model(inputs, training=False))

        row = {}
        for label, function, factor in (("forward", forward, 1.0), ("train", train, 3.0)):
            function().numpy()  # trace
            tick = time.perf_counter()
            for _ in range(repeats):
                function().numpy()
            seconds = (time.perf_counter() - tick) / repeats
            rate = factor * gflop / seconds
            row.update({f"{label}_ms": round(1000 * seconds, 1),
                        f"{label}_gflops_per_s": round(rate, 1),
                        f"{label}_vs_matmul": round(rate / matmul_rate, 3)})
        profile[name] = row
    return profile


class CachedInputs:
    """`GanInputs` look-alike serving batches computed once, before any timer starts."""

    def __init__(self, inputs):
        self.seed, self._inputs, self.cache = inputs.seed, inputs, {}

    def synthetic(self, step, role, update, size):
        key = ("synthetic", step, role, update, size)
        if key not in self.cache:
            self.cache[key] = self._inputs.synthetic(step, role, update, size)
        return self.cache[key]

    def real_pairs(self, step, update, size):
        key = ("real", step, "discriminator", update, size)
        if key not in self.cache:
            self.cache[key] = self._inputs.real_pairs(step, update, size)
        return self.cache[key]

    def request(self, keys):
        del keys

    def close(self):
        pass


def build_loop(config, source, workdir):
    """A trainer under the current Keras policy, its loop, a small prefilled buffer."""
    from simgan_histo import buffer as buffer_lib
    from simgan_histo.training import gan_data, refiner_run, refiner_trainer, schedule
    trainer = refiner_trainer.RefinerTrainer(config, workdir)
    inputs = gan_data.GanInputs(source, 0, prefetch=False)
    loop = refiner_run.TrainingLoop(config, workdir, inputs, trainer)
    loop.buffer = buffer_lib.HistoryBuffer(
        workdir / "history.h5", config.synthesis.patch_size,
        config.gan.buffer_capacity, staging_rows=8 * config.gan.batch_size, overwrite=True)
    first = sum(length for phase, length in schedule.phase_lengths(config.gan)
                if phase in schedule.PHASES[:schedule.PHASES.index("joint")])
    for k in range(2):  # enough history for the mixed batches
        loop.push(first - 1, loop.fresh_refined(first - 1, "refiner", k, config.gan.batch_size))
    return loop, first


def time_mode(loop, mode: str, source, first: int, count: int, cached) -> list:
    """Per-iteration seconds of iterations first .. first+count (the first one untimed)."""
    from simgan_histo.training import gan_data
    loop.inputs = cached if mode == "cached" else gan_data.GanInputs(
        source, 0, prefetch=mode == "pipeline")
    seconds = []
    end = first + count + 1
    for iteration in range(first, end):
        tick = time.perf_counter()
        loop.prefetch_next(iteration, end)
        loop.iterate(iteration)
        seconds.append(time.perf_counter() - tick)
    loop.inputs.close()
    return seconds[1:]


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    tf = tf_setup.import_tensorflow()
    import keras
    from simgan_histo import synthesis
    from simgan_histo.training import gan_data
    base = config_lib.get_preset(FLAGS.preset).replace(gan={"buffer_capacity": 256})
    source = synthesis.TissueSource.from_paths(FLAGS.tissue, base.synthesis, mpp=FLAGS.mpp,
                                               max_tiles=FLAGS.max_tiles)
    flop = joint_gflop(base)
    tmp = tempfile.mkdtemp(prefix="train_step_")
    loops = {}
    for precision in FLAGS.precisions:
        keras.mixed_precision.set_global_policy(precision)
        config = base.replace(runtime={"precision": precision})
        loop, first = build_loop(config, source, pathlib.Path(tmp) / precision)
        cached = CachedInputs(gan_data.GanInputs(source, 0, prefetch=False))
        for mode in MODES:  # traces every step function, fills the cache
            seconds = time_mode(loop, mode, source, first, FLAGS.iterations, cached)
            logging.info("warm-up %s %s: %s s", precision, mode, [round(s, 2) for s in seconds])
        loops[precision] = (loop, first, cached)
    keras.mixed_precision.set_global_policy("float32")
    times = {(p, m): [] for p in FLAGS.precisions for m in MODES}
    matmul = {p: [] for p in FLAGS.precisions}
    synth = []
    for round_ in range(FLAGS.rounds):
        for precision, (loop, first, cached) in loops.items():
            dtype = tf.bfloat16 if precision == "mixed_bfloat16" else tf.float32
            matmul[precision].append(same_run.tf_matmul_gflops(tf, dtype=dtype))
            for mode in MODES:
                times[precision, mode].append(statistics.median(
                    time_mode(loop, mode, source, first, FLAGS.iterations, cached)))
        tick = time.perf_counter()
        for key in cached.cache:  # the synthesis of one joint iteration, alone
            if key[1] == first + 1:
                gan_data.GanInputs(source, 0, False)._compute(key)
        synth.append(time.perf_counter() - tick)
        print(f"round {round_ + 1}/{FLAGS.rounds}: " + ", ".join(
            f"{p} {m} {times[p, m][-1]:.2f}s" for p in FLAGS.precisions for m in MODES),
            flush=True)
    report = {"benchmark": "train_step", "preset": FLAGS.preset, "rounds": FLAGS.rounds,
              "load_average_1min": os.getloadavg()[0], **flop,
              "synthesis_s_per_iteration": statistics.median(synth)}
    for precision in FLAGS.precisions:
        step = {m: statistics.median(times[precision, m]) for m in MODES}
        rate = statistics.median(matmul[precision])
        report[precision] = {
            "step_s": step["pipeline"], "step_s_cached": step["cached"],
            "step_s_no_prefetch": step["no_prefetch"],
            "model_gflops_per_s": flop["joint_iteration_gflop"] / step["pipeline"],
            "matmul_gflops_per_s": rate,
            "mfu": flop["joint_iteration_gflop"] / step["pipeline"] / rate,
            "mfu_cached": flop["joint_iteration_gflop"] / step["cached"] / rate,
            "input_overhead": step["pipeline"] / step["cached"] - 1,
            "input_overhead_no_prefetch": step["no_prefetch"] / step["cached"] - 1}
        keras.mixed_precision.set_global_policy(precision)
        report[precision]["profile"] = network_profile(
            tf, base.replace(runtime={"precision": precision}), flop, rate)
        keras.mixed_precision.set_global_policy("float32")
        logging.info("%s per-network profile: %s", precision, report[precision]["profile"])
    if {"float32", "mixed_bfloat16"} <= set(FLAGS.precisions):
        report["bf16_speedup"] = report["float32"]["step_s"] / report["mixed_bfloat16"]["step_s"]
    print(json.dumps(report, sort_keys=True))
    return 0


if __name__ == "__main__":
    app.run(main)
