"""U-Net task net with a detection and a segmentation head (released code, `model.py` learner).

Input `image`: float32 (B, H, W, 3) in [-1, 1], H and W multiples of the stride
2**(levels − 1). Outputs (a dict):

- `logits`: float32 (B, H, W, 2); channel 0 = detection, channel 1 = segmentation
  (the release's channel order). The loss reads these (`training/task_loss.py`).
- `detection`: float32 (B, H, W, 1), sigmoid of channel 0 — nucleus-centre probability.
- `segmentation`: float32 (B, H, W, 1), sigmoid of channel 1 — nuclear-pixel probability.
- `hv` (only with `TaskConfig.hv_head`): float32 (B, H, W, 2), linear horizontal and
  vertical distance maps (`training/hv_target.py`).

Layers for `release_2019` (filters 16-32-64-128-256, convs 3-4-4-5-6, all 3×3 SAME lrelu 0.2,
no normalisation):

    enc_0  16 ×3 ─────────────────────────────────────────── concat → dec_0 16 ×3 → logits 2@3×3
     └ maxpool 2 → enc_1 32 ×4 ────────────────── concat → dec_1 32 ×4 ┘ (up 32@2×2/2)
        └ maxpool 2 → enc_2 64 ×4 ────── concat → dec_2 64 ×4 ┘ (up 64@2×2/2)
           └ maxpool 2 → enc_3 128 ×5 ── concat → dec_3 128 ×5 ┘ (up 128@2×2/2)
              └ maxpool 2 → enc_4 256 ×6 ─┘ (up 256@2×2/2)

Each up-sampling is a 2×2 stride-2 transposed conv with the deeper level's width and the
same activation, concatenated with the skip, then `convs_per_level[i]` convs (release).
One deliberate difference: the release passes its logit conv through lrelu too (a slim
default); ours is linear, since lrelu only rescales negative logits.
The logit conv runs in float32 so losses stay float32 under `mixed_bfloat16`.
"""

import keras
from keras import layers

from simgan_histo.config import TaskConfig

HEADS = ("detection", "segmentation")  # logit channel order (release)


def activation_layer(config: TaskConfig, name: str) -> layers.Layer:
    """The configured nonlinearity: lrelu(alpha) (release) or relu."""
    if config.activation == "lrelu":
        return layers.LeakyReLU(negative_slope=config.lrelu_alpha, name=name)
    return layers.ReLU(name=name)


def conv_block(x, filters: int, num_convs: int, config: TaskConfig, prefix: str):
    """`num_convs` SAME convs (+ optional batch norm) with the configured activation."""
    for index in range(num_convs):
        x = layers.Conv2D(filters, config.kernel_size, padding="same",
                          use_bias=not config.batch_norm,
                          kernel_initializer="glorot_uniform",  # release: Xavier
                          name=f"{prefix}_conv_{index}")(x)
        if config.batch_norm:
            x = layers.BatchNormalization(name=f"{prefix}_bn_{index}")(x)
        x = activation_layer(config, f"{prefix}_act_{index}")(x)
    return x


def heads(x, prefix: str, upsample: int = 1, hv: bool = False) -> dict:
    """Per-head linear 3×3 logit convs (float32), optional bilinear up-sampling, sigmoids.

    Two 1-channel convs concatenated equal one 2-channel conv; separate layers avoid a
    `Lambda` slice, which a `.keras` file cannot reload safely. With `hv`, a linear
    2-channel conv adds the `hv` output (training/hv_target.py), kept out of `logits`.
    """
    outputs, logits = {}, []
    for head in HEADS:
        logit = layers.Conv2D(1, 3, padding="same", dtype="float32",
                              name=f"{prefix}_{head}_logit")(x)
        if upsample > 1:
            logit = layers.UpSampling2D(upsample, interpolation="bilinear", dtype="float32",
                                        name=f"{prefix}_{head}_upsample")(logit)
        logits.append(logit)
        outputs[head] = layers.Activation("sigmoid", dtype="float32",
                                          name=f"{prefix}_{head}")(logit)
    outputs["logits"] = layers.Concatenate(dtype="float32", name=f"{prefix}_logits")(logits)
    if hv:
        maps = layers.Conv2D(2, 3, padding="same", dtype="float32", name=f"{prefix}_hv")(x)
        if upsample > 1:
            maps = layers.UpSampling2D(upsample, interpolation="bilinear", dtype="float32",
                                       name=f"{prefix}_hv_upsample")(maps)
        outputs["hv"] = maps
    return outputs


def build_unet(config: TaskConfig, name: str = "task_net") -> keras.Model:
    """Builds the two-head U-Net described in the module docstring (uncompiled)."""
    image = keras.Input((None, None, 3), name="image")
    x = image
    skips = []
    levels = len(config.filters)
    for level, (filters, convs) in enumerate(zip(config.filters, config.convs_per_level)):
        if level:
            x = layers.MaxPooling2D(2, name=f"{name}_pool_{level}")(x)
        x = conv_block(x, filters, convs, config, f"{name}_enc_{level}")
        skips.append(x)
    for level in reversed(range(levels - 1)):
        x = layers.Conv2DTranspose(config.filters[level + 1], 2, strides=2, padding="same",
                                   name=f"{name}_up_{level}")(x)
        x = activation_layer(config, f"{name}_up_{level}_act")(x)
        x = layers.Concatenate(name=f"{name}_skip_{level}")([x, skips[level]])
        x = conv_block(x, config.filters[level], config.convs_per_level[level], config,
                       f"{name}_dec_{level}")
    return keras.Model(image, heads(x, name, hv=config.hv_head), name=name)
