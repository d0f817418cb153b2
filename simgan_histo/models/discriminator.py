"""Discriminator D(X, S): a local map of real/fake logits (paper §4.2; release model.py).

Inputs `image` (X: a real crop S′ or a refined patch G(I, S)) and `reference` (S), both
float32 (B, H, W, 3) in [-1, 1]; output float32 (B, h, w, 1) LOGITS, one per local cell,
no activation (the losses apply the sigmoid). The release's 2-class softmax head is
equivalent to one logit z = z_real − z_fake with a sigmoid: softmax([a, b])[0] = σ(a − b),
so one channel with sigmoid cross-entropy is the same model with half the head.

Layers for `release_2019` (all VALID, lrelu 0.2, no normalisation):

    conv_0            32@3×3           400 → 398,  then concat the reference vector (64 ch)
    stage_0           [32@5×5]×2, avgpool 2/2        → 390 → 195
    stage_1           [48@5×5]×3, avgpool 3/2        → 183 → 91
    stage_2           [64@5×5]×3, avgpool 3/2        → 79 → 39
    stage_3           [80@5×5]×3, avgpool 3/2        → 27 → 13
    head_conv_0…2     128@5×5, 128@3×3, 128@3×3      → 9 → 7 → 5
    logits            1@1×1 linear (float32)         (B, 5, 5, 1)

21 convs and 5 pools counting the reference branch. All-VALID needs inputs ≥ 336 px
(`DiscriminatorConfig.min_input_size()`, checked by `Config` and here when the input size
is static). The small presets use SAME padding: the map is ceil(H / 2^pools) per side
(`DiscriminatorConfig.output_size`), e.g. 16×16 for `cpu_small` at 128².
"""

from typing import Optional

import keras
from keras import layers

from simgan_histo.config import DiscriminatorConfig
from simgan_histo.models import reference as reference_lib


def conv_act(x, filters: int, kernel_size: int, config: DiscriminatorConfig, name: str):
    """Conv (the configured padding) followed by the configured activation."""
    x = layers.Conv2D(filters, kernel_size, padding=config.padding, name=name)(x)
    return reference_lib.activation_layer(config.activation, config.lrelu_alpha,
                                          f"{name}_act")(x)


def build_discriminator(config: DiscriminatorConfig, name: str = "discriminator",
                        input_size: Optional[int] = None) -> keras.Model:
    """Builds D(X, S) as described in the module docstring (uncompiled).

    Args:
      config: the architecture.
      name: model name and layer-name prefix.
      input_size: optional static square input side; None = any size. A static size is
        checked against `config.min_input_size()`.

    Returns:
      A Keras functional model with inputs `image`, `reference` and one output, the
      (B, h, w, 1) float32 logit map.

    Raises:
      ValueError: if `input_size` gives an empty logit map.
    """
    if input_size is not None and input_size < config.min_input_size():
        raise ValueError(f"input_size={input_size}: this discriminator ({config.padding} "
                         f"padding) needs inputs >= {config.min_input_size()} px")
    shape = (input_size, input_size, 3)
    image = keras.Input(shape, name="image")
    reference = keras.Input(shape, name="reference")
    x = conv_act(image, config.first_filters, config.first_kernel_size, config, f"{name}_conv_0")
    if config.use_reference:
        features = reference_lib.reference_features(reference, config.reference, name)
        x = reference_lib.tile_features(x, features, name)
    stages = zip(config.stage_filters, config.stage_convs, config.stage_pools)
    for stage, (filters, convs, pool) in enumerate(stages):
        for index in range(convs):
            x = conv_act(x, filters, config.kernel_size, config,
                         f"{name}_stage_{stage}_conv_{index}")
        x = layers.AveragePooling2D(pool, strides=2, padding=config.padding,
                                    name=f"{name}_stage_{stage}_pool")(x)
    heads = zip(config.head_filters, config.head_kernel_sizes)
    for index, (filters, kernel_size) in enumerate(heads):
        x = conv_act(x, filters, kernel_size, config, f"{name}_head_conv_{index}")
    # Logits in float32: the sigmoid cross-entropy must not run in bfloat16.
    logits = layers.Conv2D(1, 1, dtype="float32", name=f"{name}_logits")(x)
    return keras.Model([image, reference], logits, name=name)
