"""Re-scoring a patch file's importance weights with an exported discriminator (Eq. 5).

Weights written into the refiner's buffer during the discriminator's warm-up are stale
(DESIGN §1.5); `train_task.py --rescore_with=<exported D>` recomputes them once before
training with the final D:  p = mean of D's real-probability map over its cells,
w = clip(c · p / (1 − p + 1e-6), low, high)  (release: c = 1, clip [0.2, 2.0]), computed by
`training/importance.py`.

Expected export (the GAN issue's): a SavedModel (`<dir>` or `<dir>/<version>`) whose
`serving_default` takes `image` and `reference`, float32 [N, H, W, 3] RGB in 0..255 (the
task export's convention), and returns one map of real/fake logits, [N, h, w, 1] (sigmoid,
real = 1) or [N, h, w, 2] (softmax, channel 1 = real, as in the release).
"""

import numpy as np
import tensorflow as tf
from absl import logging

from simgan_histo.training import export
from simgan_histo.training import importance


def real_logits(output) -> np.ndarray:
    """D's output as one real-vs-fake logit per cell, (N, h, w, 1).

    A 2-channel softmax map becomes z = l_real − l_fake, since σ(l1 − l0) = softmax(l)[1].
    """
    output = np.asarray(output, np.float32)
    if output.ndim != 4 or output.shape[-1] not in (1, 2):
        raise ValueError(f"discriminator output must be (N, h, w, 1|2) logits, got "
                         f"{output.shape}")
    if output.shape[-1] == 2:
        output = output[..., 1:2] - output[..., 0:1]
    return output


def load_discriminator(path):
    """The discriminator's serving function; ValueError if its signature does not fit."""
    function = export.load_serving_function(path)
    _, inputs = function.structured_input_signature
    if set(inputs) != {"image", "reference"}:
        raise ValueError(f"{path}: discriminator signature takes {sorted(inputs)}, expected "
                         f"'image' and 'reference'")
    if len(function.structured_outputs) != 1:
        raise ValueError(f"{path}: discriminator signature returns "
                         f"{sorted(function.structured_outputs)}, expected one logit map")
    return function


def rescore(patches, discriminator_path, ratio: float, clip, batch_size: int = 16) -> np.ndarray:
    """New weights for every row of `patches` (a `task_data.PatchFiles`); returns them.

    The caller assigns them to `patches.weights`; the files are not modified.
    """
    function = load_discriminator(discriminator_path)
    (output_name,) = function.structured_outputs
    weights = np.empty(len(patches.rows), np.float32)
    for file_number in range(len(patches.readers)):  # one patch size per batch
        rows = np.nonzero(patches.rows[:, 0] == file_number)[0]
        for start in range(0, len(rows), batch_size):
            chunk = rows[start:start + batch_size]
            data = patches.read(chunk, ["image", "reference"])
            result = function(image=tf.constant(np.stack(data["image"]), tf.float32),
                              reference=tf.constant(np.stack(data["reference"]), tf.float32))
            logits = real_logits(result[output_name].numpy())
            weights[chunk] = importance.importance_weights(
                logits, ratio, tuple(clip), from_logits=True).numpy()
    logging.info("re-scored %d patches with %s: weight mean %.3f, min %.3f, max %.3f",
                 len(weights), discriminator_path, weights.mean(), weights.min(), weights.max())
    return weights
