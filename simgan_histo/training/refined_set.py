"""A fresh refined training set: N new synthetic patches, each refined by the final refiner.

The history buffer holds only the patches pushed during the joint GAN phase (768 at a Kumar
budget of 30 minutes, BENCHMARKS.md), so the task net sees each about 19 times, while the
no-GAN ablation trains on 10,000 distinct initial patches. With
`TaskConfig.training_patches="refined"` the pipeline instead synthesises
`gan.buffer_capacity` patches (the same stream as the no-GAN ablation's) and runs every one
through the exported refiner with its own reference patch; the task stage then re-scores
them with the final discriminator (Eq. 5) as it does the buffer. A forward pass per patch.
"""

import numpy as np
import tensorflow as tf

from simgan_histo import synthesis
from simgan_histo.training import export
from simgan_histo.training import gan_export


def refiner_transform(refiner_path, batch_size: int = 32):
    """A batch → batch function that replaces `image` by the exported refiner's output."""
    function = export.load_serving_function(refiner_path)
    _, inputs = function.structured_input_signature
    if set(inputs) != {"image", "reference"}:
        raise ValueError(f"{refiner_path}: refiner signature takes {sorted(inputs)}, expected "
                         "'image' and 'reference'")

    def transform(batch: dict) -> dict:
        refined = []
        for start in range(0, len(batch["image"]), batch_size):
            chunk = slice(start, start + batch_size)
            output = function(image=tf.constant(batch["image"][chunk], tf.float32),
                              reference=tf.constant(batch["reference"][chunk], tf.float32))
            refined.append(gan_export.refined_to_uint8(output))
        return dict(batch, image=np.concatenate(refined) if refined else batch["image"])

    return transform


def write_refined_set(source, refiner_path, out_path, num: int, seed: int,
                      config_json: str = "", workers: int = 1) -> dict:
    """Synthesises `num` patches of stream `seed`, refines them and writes a patch file.

    Returns the synthesis summary (`synthesize_to_file`) plus the refiner used.
    """
    summary = synthesis.synthesize_to_file(source, out_path, num, seed=seed, workers=workers,
                                           config_json=config_json,
                                           transform=refiner_transform(refiner_path))
    return dict(summary, refiner=str(refiner_path))
