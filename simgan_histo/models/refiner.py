"""Refiner G(I, S) (paper Fig. 5): a residual, fully convolutional image-to-image network.

Inputs `image` (the synthetic patch I) and `reference` (the reference patch S), both
float32 (B, H, W, 3) in [-1, 1]; output the refined patch `clip(I + Δ, −1, 1)`, float32
(B, H, W, 3) in [-1, 1]. Additive, no tanh (release). Any H, W ≥
`RefinerConfig.min_input_size()` (the main stream is SAME-padded; only the reference
branch may shrink its input).

Layers for `release_2019` (lrelu 0.2, no normalisation):

    pre_conv_0    32@3×3 SAME + lrelu            (B, H, W, 32)
    ref_tile      concat reference vector         (B, H, W, 64)   see reference.py
    block_0       32@5×5 → 32@5×5, + skip         (B, H, W, 32)   skip = 1×1 projection 64→32
    block_1…4     32@5×5 → 32@5×5, + identity     (B, H, W, 32)
    conv_1        3@3×3 linear (float32)          (B, H, W, 3)    Δ
    refined       clip(I + Δ, −1, 1)              (B, H, W, 3)

Deliberate fix: the release's first residual block gets 64 channels (32 + the 32 tiled
reference channels) and returns 32, so its `tf.add` fails and the code silently drops the
skip ("Cannot tf.add"). We keep the skip with a linear 1×1 projection (`block_0_skip`),
the standard ResNet remedy; blocks whose widths match use the identity.
`use_reference=False` removes the reference branch (the "no reference" ablation); the
`reference` input is then still accepted and ignored, so callers need not change.
"""

from typing import Optional

import keras
from keras import layers
from keras import ops

from simgan_histo.config import RefinerConfig
from simgan_histo.models import reference as reference_lib


def residual_block(x, filters: int, kernel_size: int, config: RefinerConfig, prefix: str):
    """Release `resnet_block`: x + act(conv(act(conv(x)))), 1×1 projection if widths differ."""
    shortcut = x
    if x.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, name=f"{prefix}_skip")(x)
    y = x
    for index in range(2):
        y = layers.Conv2D(filters, kernel_size, padding="same", name=f"{prefix}_conv_{index}")(y)
        y = reference_lib.activation_layer(config.activation, config.lrelu_alpha,
                                           f"{prefix}_act_{index}")(y)
    return layers.Add(name=f"{prefix}_add")([shortcut, y])


@keras.saving.register_keras_serializable(package="simgan_histo")
class ResidualClip(layers.Layer):
    """[I, Δ] → clip(I + Δ, −1, 1): the refined image stays in the model range."""

    def call(self, inputs):
        image, delta = inputs
        return ops.clip(ops.cast(image, delta.dtype) + delta, -1.0, 1.0)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])


def build_refiner(config: RefinerConfig, name: str = "refiner",
                  input_size: Optional[int] = None) -> keras.Model:
    """Builds G(I, S) as described in the module docstring (uncompiled).

    Args:
      config: the architecture.
      name: model name and layer-name prefix.
      input_size: optional static square input side; None = any size. A static size is
        checked against `config.min_input_size()`.

    Returns:
      A Keras functional model with inputs `image`, `reference` and one output, the
      refined image.

    Raises:
      ValueError: if `input_size` is too small for the reference branch.
    """
    if input_size is not None and input_size < config.min_input_size():
        raise ValueError(f"input_size={input_size}: this refiner's reference branch needs "
                         f">= {config.min_input_size()} px")
    shape = (input_size, input_size, 3)
    image = keras.Input(shape, name="image")
    reference = keras.Input(shape, name="reference")
    x = layers.Conv2D(config.filters, config.first_kernel_size, padding="same",
                      name=f"{name}_pre_conv_0")(image)
    x = reference_lib.activation_layer(config.activation, config.lrelu_alpha,
                                       f"{name}_pre_act_0")(x)
    if config.use_reference:
        features = reference_lib.reference_features(reference, config.reference, name)
        x = reference_lib.tile_features(x, features, name)
    for block in range(config.num_blocks):
        x = residual_block(x, config.filters, config.kernel_size, config, f"{name}_block_{block}")
    # Δ and the residual sum run in float32 so mixed precision does not quantise I + Δ.
    delta = layers.Conv2D(3, config.output_kernel_size, padding="same", dtype="float32",
                          name=f"{name}_conv_1")(x)
    refined = ResidualClip(dtype="float32", name=f"{name}_refined")([image, delta])
    return keras.Model([image, reference], refined, name=name)
