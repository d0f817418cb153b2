"""Re-scoring patch weights with an exported discriminator (a real SavedModel on disk)."""

import math

import numpy as np
import pytest
import tensorflow as tf

from simgan_histo.training import rescore
from simgan_histo.training import task_data
from tests.training import toy_data


class _Discriminator(tf.Module):
    """Logit map whose every cell is (mean image − mean reference) / 50: known by hand."""

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32, "image"),
                                  tf.TensorSpec([None, None, None, 3], tf.float32,
                                                "reference")])
    def serve(self, image, reference):
        logit = (tf.reduce_mean(image, [1, 2, 3]) - tf.reduce_mean(reference, [1, 2, 3])) / 50
        cells = tf.ones([tf.shape(image)[0], 3, 3, 1]) * logit[:, None, None, None]
        if self.channels == 2:  # release style: softmax over (fake, real)
            cells = tf.concat([tf.zeros_like(cells), cells], axis=-1)
        return {"logits": cells}


def _save(module, path):
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path


@pytest.mark.parametrize("channels", [1, 2])
def test_rescored_weights_match_eq5_by_hand(tmp_path, channels):
    path = toy_data.write_patch_file(tmp_path / "p.h5", count=5)
    files = task_data.PatchFiles([path])
    discriminator = _save(_Discriminator(channels), tmp_path / "d" / "1")
    weights = rescore.rescore(files, tmp_path / "d", ratio=1.0, clip=(0.2, 2.0), batch_size=2)
    data = files.read(np.arange(5), ["image", "reference"])
    for index in range(5):
        logit = (data["image"][index].astype(np.float64).mean()
                 - data["reference"][index].astype(np.float64).mean()) / 50
        p = 1 / (1 + math.exp(-logit))
        expected = min(max(p / (1 - p + 1e-6), 0.2), 2.0)
        assert weights[index] == pytest.approx(expected, rel=1e-4)
    assert discriminator.exists()


def test_clip_bounds_apply(tmp_path):
    assert rescore.real_logits(np.full((1, 2, 2, 2), 0.0)).shape == (1, 2, 2, 1)
    with pytest.raises(ValueError, match="logits"):
        rescore.real_logits(np.zeros((1, 2, 2, 3)))


def test_wrong_signature_is_refused(tmp_path):
    class _OneInput(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32,
                                                    "image")])
        def serve(self, image):
            return {"logits": image[..., :1]}

    _save(_OneInput(), tmp_path / "d" / "1")
    with pytest.raises(ValueError, match="'image' and 'reference'"):
        rescore.load_discriminator(tmp_path / "d")
