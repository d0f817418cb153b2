"""Every loss pinned on hand-made tensors, reductions included (DESIGN §1.4)."""

import math

import numpy as np
import pytest
import tensorflow as tf

from simgan_histo.training import losses


def softplus(x):
    return math.log1p(math.exp(x))


def test_elastic_net_sums_over_pixels_and_channels_per_sample():
    synthetic = np.zeros((2, 2, 2, 3), np.float32)
    refined = np.zeros((2, 2, 2, 3), np.float32)
    refined[0, 0, 0, 0] = 0.5  # sample 0: one pixel-channel off by 0.5
    refined[0, 1, 1, 2] = -1.0  #           and one by −1
    refined[1] = 0.1  # sample 1: all 12 values off by 0.1
    got = losses.elastic_net_loss(refined, synthetic, l1=2.0, l2=3.0).numpy()
    expected = [2.0 * (0.5 + 1.0) + 3.0 * (0.25 + 1.0),  # 3 + 3.75
                2.0 * 12 * 0.1 + 3.0 * 12 * 0.01]  # 2.4 + 0.36
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert got.shape == (2,)
    # Doubling the image size doubles the loss: a sum, not a per-pixel mean.
    big = losses.elastic_net_loss(np.tile(refined, (1, 2, 1, 1)),
                                  np.tile(synthetic, (1, 2, 1, 1)), 2.0, 3.0).numpy()
    np.testing.assert_allclose(big, 2 * np.array(expected), rtol=1e-6)


def test_local_adversarial_loss_sums_sigmoid_ce_over_cells():
    logits = np.zeros((2, 2, 2, 1), np.float32)
    logits[0] = [[[0.0], [2.0]], [[-1.0], [3.0]]]
    logits[1] = [[[0.0], [0.0]], [[0.0], [0.0]]]
    real = losses.local_adversarial_loss(logits, is_real=True).numpy()
    fake = losses.local_adversarial_loss(logits, is_real=False).numpy()
    # CE(real) = −log σ(z) = softplus(−z); CE(fake) = −log(1 − σ(z)) = softplus(z).
    np.testing.assert_allclose(
        real, [softplus(0) + softplus(-2) + softplus(1) + softplus(-3), 4 * math.log(2)],
        rtol=1e-6)
    np.testing.assert_allclose(
        fake, [softplus(0) + softplus(2) + softplus(-1) + softplus(3), 4 * math.log(2)],
        rtol=1e-6)


def test_refiner_adversarial_loss_kinds():
    logits = np.array([[[[1.0], [-2.0]]]], np.float32)  # (1, 1, 2, 1)
    p = 1 / (1 + np.exp(-logits.ravel()))
    non_saturating = losses.refiner_adversarial_loss(logits).numpy()
    np.testing.assert_allclose(non_saturating, [-np.log(p).sum()], rtol=1e-6)
    minimax = losses.refiner_adversarial_loss(logits, kind="log_one_minus").numpy()
    np.testing.assert_allclose(minimax, [np.log(1 - p).sum()], rtol=1e-6)
    with pytest.raises(ValueError, match="kind='hinge'"):
        losses.refiner_adversarial_loss(logits, kind="hinge")


def test_refiner_adversarial_gradients_point_to_real():
    logits = tf.Variable(np.full((1, 1, 1, 1), -4.0, np.float32))  # D is sure it is fake
    for kind, larger in (("non_saturating", True), ("log_one_minus", False)):
        with tf.GradientTape() as tape:
            loss = losses.refiner_adversarial_loss(logits, kind=kind)
        grad = float(tape.gradient(loss, logits).numpy().ravel()[0])
        assert grad < 0  # descending raises the logit
        # −log D keeps a strong gradient where log(1 − D) saturates (the release's reason).
        assert (abs(grad) > 0.9) == larger


def test_discriminator_loss_pairs_and_history():
    real = np.zeros((2, 1, 1, 1), np.float32)
    real[0] = 2.0
    fake = np.full((1, 1, 1, 1), -1.0, np.float32)
    history = np.full((1, 1, 1, 1), 3.0, np.float32)
    got = float(losses.discriminator_loss(real, fake, history))
    real_mean = (softplus(-2.0) + softplus(0.0)) / 2
    fake_mean = (softplus(-1.0) + softplus(3.0)) / 2
    assert got == pytest.approx(real_mean + fake_mean, rel=1e-6)
    # Release form: mean(concat[fake_current, fake_history] + real) with equal batch sizes.
    release = np.mean(np.array([softplus(-1.0), softplus(3.0)]) +
                      np.array([softplus(-2.0), softplus(0.0)]))
    assert got == pytest.approx(release, rel=1e-6)
    no_history = float(losses.discriminator_loss(real, fake))
    assert no_history == pytest.approx(real_mean + softplus(-1.0), rel=1e-6)


def test_hard_example_and_total_refiner_loss():
    task = np.array([10.0, 4.0], np.float32)
    hard = losses.hard_example_loss(task, gamma=1e-7).numpy()
    np.testing.assert_allclose(hard, [-1e-6, -4e-7], rtol=1e-6)
    total = losses.refiner_loss(np.array([1.0, 2.0]), np.array([3.0, 5.0]), hard,
                                alpha=2.0, beta=0.5).numpy()
    np.testing.assert_allclose(total, [2.0 + 1.5 - 1e-6, 4.0 + 2.5 - 4e-7], rtol=1e-6)
    assert float(losses.batch_mean(total)) == pytest.approx((3.5 - 1e-6 + 6.5 - 4e-7) / 2)


def test_bfloat16_inputs_are_computed_in_float32():
    refined = tf.constant(np.full((1, 4, 4, 3), 0.5, np.float32), tf.bfloat16)
    loss = losses.elastic_net_loss(refined, tf.zeros((1, 4, 4, 3)), 1.0, 0.0)
    assert loss.dtype == tf.float32 and float(loss[0]) == pytest.approx(24.0)
