"""Task-net forward speed: MP/s in float32 and mixed_bfloat16, FLOP per pixel, GFLOP/s.

Usage: python benchmarks/inference_speed.py [--presets=tiny,cpu_small,release_2019,paper_2017]
    [--size=1024] [--rounds=5] [--xla]

For each preset's task net (random weights: speed does not depend on them) a `tf.function`
forward of one size×size RGB image, scaled from 0..255 inside as in the exported signature,
is timed in each precision. Rounds are interleaved (every variant, then the fp32 matmul
reference, in turn) and medians reported; FLOP per pixel come from the graph profiler
(`models/flops.py`, multiply-add = 2 FLOP) at the same size. `--xla` adds jit-compiled
variants. Last stdout line: one JSON object.
"""

import json
import statistics
import sys
import time

from absl import app
from absl import flags

sys.path.insert(0, ".")  # run from the checkout: `python benchmarks/inference_speed.py`

from simgan_histo import config as config_lib  # noqa: E402
from simgan_histo import tf_setup  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("presets", ["tiny", "cpu_small", "release_2019", "paper_2017"],
                  "Presets whose task nets are timed (demo's equals cpu_small's).")
flags.DEFINE_integer("size", 1024, "Image side, px (rounded down to the net's stride).")
flags.DEFINE_integer("rounds", 5, "Interleaved rounds (median reported).")
flags.DEFINE_bool("xla", False, "Also time jit-compiled (XLA) forwards.")


def build_forward(tf, keras, task_config, precision: str, jit: bool):
    """A compiled forward 0..255 RGB -> (segmentation, detection) under `precision`."""
    from simgan_histo.models import task_net  # pylint: disable=import-outside-toplevel

    keras.mixed_precision.set_global_policy(precision)
    try:
        model = task_net.build_task_net(task_config)
    finally:
        keras.mixed_precision.set_global_policy("float32")

    @tf.function(jit_compile=jit)
    def forward(image):
        outputs = model(image / 127.5 - 1.0, training=False)
        return outputs["segmentation"], outputs["detection"]

    return model, forward


def timed(function, *args) -> float:
    start = time.perf_counter()
    outputs = function(*args)
    for output in outputs if isinstance(outputs, (tuple, list)) else [outputs]:
        output.numpy()
    return time.perf_counter() - start


def main(argv):
    del argv
    tf = tf_setup.import_tensorflow()
    import keras  # pylint: disable=import-outside-toplevel
    from simgan_histo.models import flops  # pylint: disable=import-outside-toplevel

    variants, results = {}, {}
    for name in FLAGS.presets:
        task = config_lib.get_preset(name).task
        side = FLAGS.size // task.stride * task.stride
        image = tf.random.uniform((1, side, side, 3), 0, 255)
        for precision in ("float32", "mixed_bfloat16"):
            for jit in ([False, True] if FLAGS.xla else [False]):
                model, forward = build_forward(tf, keras, task, precision, jit)
                key = f"{name}/{'bf16' if precision != 'float32' else 'fp32'}{'_xla' if jit else ''}"
                timed(forward, image)  # trace and warm up
                variants[key] = (forward, image)
                if precision == "float32" and not jit:
                    count = flops.forward_flops(model, [(1, side, side, 3)])
                    results[name] = {"flop_per_pixel": count / side ** 2, "size": side,
                                     "parameters": int(model.count_params())}
    a, b = tf.random.normal((2048, 2048)), tf.random.normal((2048, 2048))
    timed(tf.linalg.matmul, a, b)
    times = {key: [] for key in variants}
    matmul = []
    for _ in range(FLAGS.rounds):
        for key, (forward, image) in variants.items():
            times[key].append(timed(forward, image))
        matmul.append(2 * 2048 ** 3 / timed(tf.linalg.matmul, a, b) / 1e9)
    reference = statistics.median(matmul)
    for key, samples in times.items():
        name, variant = key.split("/")
        seconds = statistics.median(samples)
        pixels = results[name]["size"] ** 2
        gflops = results[name]["flop_per_pixel"] * pixels / seconds / 1e9
        results[name][variant] = {"mp_per_s": round(pixels / seconds / 1e6, 3),
                                  "seconds": round(seconds, 4), "gflop_per_s": round(gflops, 1),
                                  "fraction_of_matmul": round(gflops / reference, 3)}
        print(f"{key:28s} {pixels / seconds / 1e6:8.3f} MP/s {gflops:7.1f} GFLOP/s "
              f"({gflops / reference:.0%} of matmul)")
    print(json.dumps({"benchmark": "inference_speed", "rounds": FLAGS.rounds,
                      "matmul_fp32_gflop_per_s": round(reference, 1), "presets": results}))


if __name__ == "__main__":
    app.run(main)
