"""The refiner's and the discriminator's losses (paper Eq. 4–6; release `model.py::_build_loss`).

    L_G = α·L_reg + β·L_real + γ·L_hard,   L_reg = λ1‖I − X‖₁ + λ2‖I − X‖₂²,   L_hard = −L_task

REDUCTIONS follow the release, or the paper's weights mean nothing (DESIGN §1.4):
L_reg is summed over pixels and channels (images in [-1, 1]), the adversarial losses are
summed over D's output cells, the task loss (from `task_loss.py`) is summed over pixels.
Every function here returns PER-SAMPLE values, shape (B,); the call site averages over
the batch with `batch_mean` (after multiplying importance weights, where they apply).
The one exception is `discriminator_loss`, which is never weighted and returns the
release's scalar directly.

All inputs may be bfloat16 under mixed precision; everything is computed in float32.
"""

import tensorflow as tf

ADVERSARIAL_KINDS = ("non_saturating", "log_one_minus")


def _float32(x):
    return tf.cast(x, tf.float32)


def _sum_per_sample(x):
    """Sums every axis but the first: (B, ...) → (B,)."""
    x = _float32(x)
    return tf.reduce_sum(tf.reshape(x, [tf.shape(x)[0], -1]), axis=1)


def batch_mean(per_sample):
    """The batch average the release applies last: (B,) → scalar."""
    return tf.reduce_mean(_float32(per_sample))


def elastic_net_loss(refined, synthetic, l1: float, l2: float):
    """λ1·Σ|X − I| + λ2·Σ(X − I)², summed over pixels and channels: (B,H,W,C) → (B,).

    Args:
      refined: X = G(I, S), in [-1, 1].
      synthetic: I, in [-1, 1].
      l1: λ1 (GanTrainConfig.lambda_l1).
      l2: λ2 (GanTrainConfig.lambda_l2); the L2 term is squared, as in the release.
    """
    difference = _float32(refined) - _float32(synthetic)
    return l1 * _sum_per_sample(tf.abs(difference)) + l2 * _sum_per_sample(tf.square(difference))


def local_adversarial_loss(logits, is_real: bool):
    """Sigmoid cross-entropy of every cell of D's logit map against one label, summed per sample.

    With label 1 ("real") a cell costs −log σ(z) = softplus(−z); with label 0 ("fake")
    −log(1 − σ(z)) = softplus(z). (B, h, w, 1) → (B,).
    """
    logits = _float32(logits)
    labels = tf.ones_like(logits) if is_real else tf.zeros_like(logits)
    return _sum_per_sample(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits))


def refiner_adversarial_loss(fake_logits, kind: str = "non_saturating"):
    """L_real for the refiner, per sample: D's logits on (G(I, S), S) → (B,).

    Args:
      fake_logits: D's logit map on refined patches, (B, h, w, 1).
      kind: "non_saturating" (release): Σ −log D(X) = CE against "real".
        "log_one_minus" (paper's minimax form): Σ log(1 − D(X)) = −CE against "fake"; it is
        ≤ 0 and its gradient vanishes where D is confident, hence the release's choice.

    Raises:
      ValueError: for an unknown `kind`.
    """
    if kind == "non_saturating":
        return local_adversarial_loss(fake_logits, is_real=True)
    if kind == "log_one_minus":
        return -local_adversarial_loss(fake_logits, is_real=False)
    raise ValueError(f"kind={kind!r}: expected one of {ADVERSARIAL_KINDS}")


def discriminator_loss(real_logits, fake_logits, history_logits=None):
    """D's loss: real pairs (S′, S) against fake pairs (G(I, S), S), scalar.

    Release: mean(concat[CE(fake current), CE(fake history)] + CE(real)); each CE is summed
    over D's cells. With the fake batch (current + history) as large as the real batch, that
    equals mean over real samples + mean over fake samples, which is what we compute (it
    also holds when the two sizes differ).

    Args:
      real_logits: D on real pairs, two crops of one tissue tile, (B_real, h, w, 1).
      fake_logits: D on the current refiner's output with each patch's own reference.
      history_logits: D on refined patches from the history buffer (S+U), or None.

    Returns:
      Scalar float32 loss.
    """
    fake = local_adversarial_loss(fake_logits, is_real=False)
    if history_logits is not None:
        fake = tf.concat([fake, local_adversarial_loss(history_logits, is_real=False)], axis=0)
    real = local_adversarial_loss(real_logits, is_real=True)
    return batch_mean(real) + batch_mean(fake)


def hard_example_loss(task_loss_per_sample, gamma: float):
    """γ·L_hard = −γ·L_task, per sample (B,): the refiner is rewarded for hard patches.

    `task_loss_per_sample` is the task net's per-sample loss on the refined patch (summed
    over pixels, release), unweighted by importance (release).
    """
    return -gamma * _float32(task_loss_per_sample)


def refiner_loss(reg, adversarial, hard, alpha: float, beta: float):
    """Per-sample L_G = α·L_reg + β·L_real + γ·L_hard (γ is already inside `hard`)."""
    return alpha * _float32(reg) + beta * _float32(adversarial) + _float32(hard)
