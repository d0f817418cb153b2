"""FLOP figures of each preset's refiner G, discriminator D and task net T, per joint iteration.

Usage: python benchmarks/model_flops.py [--presets=cpu_small,demo,tiny] [--rounds=5]

Forward FLOPs per sample come from TensorFlow's graph profiler (`models/flops.py`; one
multiply-add = 2 FLOP) at the preset's patch size, image and reference inputs included.
A training pass costs ≈ 3× forward (forward + input gradients + weight gradients); a
backward pass that only needs input gradients (D and T inside the refiner's loss) ≈ 2×.

One joint iteration (schedule phase "joint") as `training/refiner_run.py` runs it, with
B = GanTrainConfig.batch_size and K_g, K_d, K_task from the preset:

    refiner step   B·(3G + 2D + 2T)      G trained; D and T (L_hard) differentiated to the input
    D step         2B·3D                 B real pairs + B fakes (current refined + history)
    task step      B·(3T + D + G)        fresh refined half (G refines a full batch), D scores
                                         the importance weights, T trained
    buffer push    B·D                   weights of the pushed patches
    total = K_g·refiner + K_d·D + K_task·task + push

The same-run reference is the fp32 matmul rate (median of --rounds); "seconds_at_90pct"
converts FLOPs with the ≈ 90 % of matmul peak a GradientTape step reached here (DESIGN §4),
an estimate, not a measurement of the trainer. Last stdout line: one JSON object.
"""

import json
import statistics
import sys

from absl import app
from absl import flags

sys.path.insert(0, ".")  # run from the checkout: `python benchmarks/model_flops.py`

from simgan_histo import config as config_lib  # noqa: E402
from simgan_histo import tf_setup  # noqa: E402
import same_run  # noqa: E402  (benchmarks/ is first on the path)

FLAGS = flags.FLAGS
flags.DEFINE_list("presets", list(config_lib.PRESETS), "Presets to count.")
flags.DEFINE_integer("rounds", 5, "Rounds of the matmul reference (median reported).")

BUDGET_TFLOP = 0.3  # DESIGN §4: cpu_small, demo, tiny
BUDGET_PRESETS = ("cpu_small", "demo", "tiny")


def network_flops(config) -> dict:
    """Forward GFLOP per sample of G, D and T at the preset's patch size, and parameters."""
    from simgan_histo.models import discriminator, flops, refiner, task_net

    size = config.synthesis.patch_size
    pair = [(1, size, size, 3)] * 2
    nets = {"refiner": (refiner.build_refiner(config.refiner), pair),
            "discriminator": (discriminator.build_discriminator(config.discriminator), pair),
            "task_net": (task_net.build_task_net(config.task), [(1, size, size, 3)])}
    figures = {}
    for name, (model, shapes) in nets.items():
        forward = flops.forward_flops(model, shapes) / 1e9
        figures[name] = {"forward_gflop": forward, "train_gflop": 3 * forward,
                         "parameters": int(model.count_params())}
    return figures


def joint_iteration(config, nets: dict) -> dict:
    """GFLOP of one joint iteration under the cost model of the module docstring."""
    gan = config.gan
    g = nets["refiner"]["forward_gflop"]
    d = nets["discriminator"]["forward_gflop"]
    t = nets["task_net"]["forward_gflop"]
    batch = gan.batch_size
    hard = 2 * t if gan.use_hard_examples else 0.0
    weights = d if gan.use_importance_weights else 0.0
    steps = {"refiner_step": batch * (3 * g + 2 * d + hard),
             "discriminator_step": 2 * batch * 3 * d,
             "task_step": batch * (3 * t + weights + g),
             "buffer_push": batch * d}
    total = (gan.k_g * steps["refiner_step"] + gan.k_d * steps["discriminator_step"] +
             gan.k_task * steps["task_step"] + steps["buffer_push"])
    return {**{f"{k}_gflop": v for k, v in steps.items()}, "joint_iteration_tflop": total / 1e3,
            "batch_size": batch, "k_g": gan.k_g, "k_d": gan.k_d, "k_task": gan.k_task}


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    tf = tf_setup.import_tensorflow()
    tf.get_logger().setLevel("ERROR")
    rate = statistics.median(same_run.tf_matmul_gflops(tf) for _ in range(FLAGS.rounds))
    results = {}
    for name in FLAGS.presets:
        config = config_lib.get_preset(name)
        nets = network_flops(config)
        joint = joint_iteration(config, nets)
        size = config.synthesis.patch_size
        results[name] = {
            "patch_size": size,
            "discriminator_map": config.discriminator.output_size(size),
            **{f"{net}_{key}": value for net, figures in nets.items()
               for key, value in figures.items()},
            **joint,
            "seconds_at_90pct": joint["joint_iteration_tflop"] * 1e3 / (0.9 * rate),
        }
        if name in BUDGET_PRESETS:
            results[name]["within_budget"] = joint["joint_iteration_tflop"] <= BUDGET_TFLOP
        print(f"{name:13s} patch {size:3d}  G {nets['refiner']['forward_gflop']:7.2f}  "
              f"D {nets['discriminator']['forward_gflop']:6.2f}  "
              f"T {nets['task_net']['forward_gflop']:6.2f} GFLOP/sample fwd   joint "
              f"{joint['joint_iteration_tflop']:.3f} TFLOP ≈ "
              f"{results[name]['seconds_at_90pct']:.1f} s")
    print(json.dumps({"benchmark": "model_flops", "matmul_fp32_gflops": rate,
                      "budget_tflop": BUDGET_TFLOP, "presets": results}, sort_keys=True))
    return 0


if __name__ == "__main__":
    app.run(main)
