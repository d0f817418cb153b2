"""SavedModels of the refiner and the discriminator, in TF Serving layout.

- `<workdir>/export/refiner/<version>/`: `serving_default(image, reference)`, both float32
  [N, H, W, 3] RGB in 0..255 → `refined` float32 [N, H, W, 3] in 0..255.
- `<workdir>/export/discriminator/<version>/`: `serving_default(image, reference)` →
  `logits` float32 [N, h, w, 1] (sigmoid: real = 1), what `train_task.py --rescore_with`
  reads to recompute importance weights with the final D.
- `<workdir>/export/task_net.weights.h5`: the jointly trained task net (Keras weights), the
  starting point of the pipeline's exported task net.
"""

import os
import pathlib
import shutil

import numpy as np
import tensorflow as tf

from simgan_histo.evaluation import predict_lib
from simgan_histo.training import export as task_export

_IMAGE_SPEC = tf.TensorSpec([None, None, None, 3], tf.float32, name="image")
_REFERENCE_SPEC = tf.TensorSpec([None, None, None, 3], tf.float32, name="reference")


class RefinerServing(tf.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    @tf.function(input_signature=[_IMAGE_SPEC, _REFERENCE_SPEC])
    def serve(self, image, reference):
        refined = self.model({"image": image / 127.5 - 1.0, "reference": reference / 127.5 - 1.0},
                             training=False)
        return {"refined": (tf.cast(refined, tf.float32) + 1.0) * 127.5}


class DiscriminatorServing(tf.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    @tf.function(input_signature=[_IMAGE_SPEC, _REFERENCE_SPEC])
    def serve(self, image, reference):
        logits = self.model({"image": image / 127.5 - 1.0, "reference": reference / 127.5 - 1.0},
                            training=False)
        return {"logits": tf.cast(logits, tf.float32)}


def refined_to_uint8(output) -> np.ndarray:
    """The refiner SavedModel's output dict → uint8 patches, rounded and clipped as the
    trainer stores refined patches in its buffer."""
    return np.clip(np.rint(np.asarray(output["refined"])), 0, 255).astype(np.uint8)


def save_module(module, export_dir, config) -> pathlib.Path:
    """Writes the next numbered version of `module` atomically; returns its folder."""
    export_dir = pathlib.Path(export_dir)
    export_dir.mkdir(parents=True, exist_ok=True)
    versions = task_export._versions(export_dir)  # pylint: disable=protected-access
    version = (versions or [0])[-1] + 1
    tmp = export_dir / f".tmp-{version}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tf.saved_model.save(module, str(tmp),
                        signatures={"serving_default": module.serve.get_concrete_function()})
    (tmp / "assets").mkdir(exist_ok=True)
    (tmp / "assets" / "config.json").write_text(config.to_json())
    final = export_dir / str(version)
    os.replace(tmp, final)
    return final


TASK_WEIGHTS = "task_net.weights.h5"


def save_task_weights(model, path) -> pathlib.Path:
    """Keras weights of the GAN's task net, written atomically (the pipeline's task stage
    starts from them)."""
    path = pathlib.Path(path)
    predict_lib.atomic_write(path, model.save_weights, ".weights.h5")  # Keras wants the suffix
    return path


def export_all(trainer, workdir, config) -> dict:
    """Exports G and D of `trainer` under `<workdir>/export/`, and the task net's weights;
    returns their paths."""
    root = pathlib.Path(workdir) / "export"
    refiner = save_module(RefinerServing(trainer.refiner), root / "refiner", config)
    discriminator = save_module(DiscriminatorServing(trainer.discriminator),
                                root / "discriminator", config)
    task = save_task_weights(trainer.task_net, root / TASK_WEIGHTS)
    return {"refiner_export": str(refiner), "discriminator_export": str(discriminator),
            "task_net_weights": str(task)}
