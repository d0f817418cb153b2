"""Eq. 5 importance weights against hand-computed values."""

import math

import numpy as np
import pytest
import tensorflow as tf

from simgan_histo.training import importance


def logit(p):
    return math.log(p / (1 - p))


def test_weights_from_probabilities_mean_over_the_map():
    probabilities = np.zeros((3, 2, 2, 1), np.float32)
    probabilities[0] = 0.5  # p̄ = 0.5 → w = 0.5 / 0.5 = 1
    probabilities[1] = [[[0.2], [0.4]], [[0.2], [0.4]]]  # p̄ = 0.3 → 0.3 / 0.7
    probabilities[2] = 0.9  # p̄ = 0.9 → 9, clipped to 2
    got = importance.importance_weights(probabilities, ratio=1.0, clip=(0.2, 2.0),
                                        from_logits=False).numpy()
    eps = importance.EPSILON
    np.testing.assert_allclose(got, [0.5 / (0.5 + eps), 0.3 / (0.7 + eps), 2.0], rtol=1e-5)


def test_ratio_scales_and_low_clip_applies():
    probabilities = np.array([0.5, 0.05, 0.25], np.float32).reshape(3, 1, 1, 1)
    got = importance.importance_weights(probabilities, ratio=3.0, clip=(0.5, 10.0),
                                        from_logits=False).numpy()
    # 3·1 = 3; 3·0.05/0.95 = 0.158 → 0.5; 3·0.25/0.75 = 1.
    np.testing.assert_allclose(got, [3.0, 0.5, 1.0], rtol=1e-5)


def test_logits_are_averaged_as_probabilities_not_as_logits():
    logits = np.array([[[[logit(0.9)], [logit(0.1)]]]], np.float32)  # p̄ = 0.5 → w = 1
    got = importance.importance_weights(logits, clip=(0.01, 100.0), from_logits=True).numpy()
    np.testing.assert_allclose(got, [1.0], rtol=1e-4)
    # Averaging the logits first would also give 0.5 here; this one tells them apart:
    logits = np.array([[[[logit(0.99)], [logit(0.5)]]]], np.float32)  # p̄ = 0.745
    got = importance.importance_weights(logits, clip=(0.01, 100.0), from_logits=True).numpy()
    np.testing.assert_allclose(got, [0.745 / 0.255], rtol=1e-4)


def test_gradient_is_stopped():
    logits = tf.Variable(np.zeros((2, 2, 2, 1), np.float32))
    with tf.GradientTape() as tape:
        weights = importance.importance_weights(logits, from_logits=True)
        loss = tf.reduce_sum(weights * tf.reduce_sum(logits))
    grad = tape.gradient(loss, logits)
    # Only the explicit factor carries gradient: d/dz (w·Σz) = w with w treated as constant.
    np.testing.assert_allclose(grad.numpy(), np.full((2, 2, 2, 1), 2.0), rtol=1e-5)


def test_bad_arguments():
    with pytest.raises(ValueError, match="ratio"):
        importance.importance_weights(np.zeros((1, 1, 1, 1)), ratio=0.0, from_logits=True)
    with pytest.raises(ValueError, match="clip"):
        importance.importance_weights(np.zeros((1, 1, 1, 1)), clip=(2.0, 1.0), from_logits=True)
    with pytest.raises(TypeError):
        importance.importance_weights(np.zeros((1, 1, 1, 1)))  # from_logits must be said


def test_clip_fractions():
    probabilities = np.array([0.01, 0.02, 0.5, 0.99], np.float32).reshape(4, 1, 1, 1)
    weights = importance.importance_weights(probabilities, clip=(0.2, 2.0), from_logits=False)
    got = {k: float(v) for k, v in importance.clip_fractions(weights, (0.2, 2.0)).items()}
    assert got["weights/at_low"] == 0.5 and got["weights/at_high"] == 0.25
    assert got["weights/mean"] == pytest.approx((0.2 + 0.2 + 1.0 + 2.0) / 4, rel=1e-5)
