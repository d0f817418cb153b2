"""Importance weights of refined patches (paper Eq. 5).

A refined patch X is a sample from the generator's distribution g, but the task net should
learn the real distribution p. Importance sampling weighs each X by the density ratio,
which the discriminator estimates (paper Eq. 5):

    p(X) / g(X) = c · Pr(X∼p | X) / (1 − Pr(X∼p | X))

where Pr(X∼p | X) is D's probability that X is real and c the synthetic:real sample ratio
seen by D. D outputs a local map; as in the release, Pr is the MEAN of the map's real
probabilities, p̄ = mean_cells σ(z). The weight

    w = clip(c · p̄ / (1 − p̄ + ε), lo, hi),   ε = 1e-6 (release)

multiplies that sample's task loss, and the task loss is the batch mean of w_i·L_i, NOT
normalised by Σw (that would cancel c) (DESIGN §1.5). Release: c = 1, [lo, hi] = [0.2, 2.0].
Unrealistic patches (p̄ small) count less; realistic ones more.

The weights are constants for the task net: `tf.stop_gradient` keeps any gradient from
flowing into D (or the refiner) through them.
"""

from typing import Dict, Tuple

import tensorflow as tf

EPSILON = 1e-6  # release: p / (1 − p + 1e-6)


def mean_real_probability(d_output, from_logits: bool):
    """p̄ per sample: the mean over D's (B, h, w, 1) map of σ(logit), or of the probabilities."""
    d_output = tf.cast(d_output, tf.float32)
    probability = tf.sigmoid(d_output) if from_logits else d_output
    return tf.reduce_mean(tf.reshape(probability, [tf.shape(probability)[0], -1]), axis=1)


def importance_weights(d_output, ratio: float = 1.0, clip: Tuple[float, float] = (0.2, 2.0), *,
                       from_logits: bool):
    """Eq. 5 weights w = clip(c·p̄/(1 − p̄ + ε), lo, hi), shape (B,), gradient stopped.

    Args:
      d_output: D's map on (X, S), (B, h, w, 1): logits, or real probabilities.
      ratio: c, the synthetic:real sample ratio (GanTrainConfig.importance_ratio).
      clip: (lo, hi) bounds (GanTrainConfig.importance_clip).
      from_logits: whether `d_output` holds logits (D's raw output) or probabilities;
        keyword-only and required, because mixing them up fails silently.

    Raises:
      ValueError: for a non-positive ratio or bounds that are not 0 < lo <= hi.
    """
    low, high = clip
    if ratio <= 0:
        raise ValueError(f"ratio={ratio}: expected > 0")
    if not 0 < low <= high:
        raise ValueError(f"clip={clip}: expected 0 < lo <= hi")
    p = mean_real_probability(d_output, from_logits)
    weights = ratio * p / (1.0 - p + EPSILON)
    return tf.stop_gradient(tf.clip_by_value(weights, low, high))


def clip_fractions(weights, clip: Tuple[float, float]) -> Dict[str, tf.Tensor]:
    """For logging: the share of weights at the lower bound, at the upper bound, and their mean.

    Many weights at a bound mean the bound, not D, sets the weighting. Keys are
    TensorBoard tags.
    """
    low, high = clip
    weights = tf.cast(weights, tf.float32)
    return {
        "weights/at_low": tf.reduce_mean(tf.cast(weights <= low, tf.float32)),
        "weights/at_high": tf.reduce_mean(tf.cast(weights >= high, tf.float32)),
        "weights/mean": tf.reduce_mean(weights),
    }
