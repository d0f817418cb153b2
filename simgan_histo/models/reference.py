"""Reference-patch branch (paper Fig. 5): conv stack → global pool → tiled over H×W.

The refiner and the discriminator each own one (weights are not shared, as in the release).
A reference patch S (float32 (B, H, W, 3) in [-1, 1], a second crop of the tissue tile the
synthetic patch was made from) becomes a (B, C) vector that is tiled over the main stream's
H×W and concatenated after its first conv, so every local decision sees the tile's
global appearance ("asymmetric siamese" design, DESIGN §1.3).

Release layers (`release_2019`, all VALID, lrelu 0.2, no normalisation):

    ref_conv_0   32@4×4          (B, H−3, W−3, 32)
    ref_pool     avgpool 3/2     (B, (H−6)/2+1, …, 32)
    ref_conv_1…4 32@5×5          (…, −16 px)
    ref_global   global mean     (B, 32)

The release sizes its "global" pool from the input size ((H−3−1)/2−16); a true global
average pool gives the same vector for that size and accepts any input ≥ `min_input_size()`.
"""

import keras
from keras import layers
from keras import ops

from simgan_histo.config import ReferenceBranchConfig


def activation_layer(kind: str, alpha: float, name: str) -> layers.Layer:
    """lrelu(alpha) (release: 0.6x + 0.4|x| = lrelu(0.2)) or relu."""
    if kind == "lrelu":
        return layers.LeakyReLU(negative_slope=alpha, name=name)
    return layers.ReLU(name=name)


def reference_features(reference, config: ReferenceBranchConfig, prefix: str):
    """The reference branch: (B, H, W, 3) → (B, config.filters), globally average-pooled.

    Args:
      reference: float32 reference patch in [-1, 1] (a Keras tensor or an eager tensor).
      config: the branch's architecture.
      prefix: the owning network's name; layers are named `<prefix>_ref_*`.

    Returns:
      The pooled feature vector, shape (B, config.filters).
    """
    x = layers.Conv2D(config.filters, config.first_kernel_size, padding=config.padding,
                      name=f"{prefix}_ref_conv_0")(reference)
    x = activation_layer(config.activation, config.lrelu_alpha, f"{prefix}_ref_act_0")(x)
    x = layers.AveragePooling2D(config.pool_size, strides=2, padding=config.padding,
                                name=f"{prefix}_ref_pool")(x)
    for index in range(1, config.num_convs + 1):
        x = layers.Conv2D(config.filters, config.kernel_size, padding=config.padding,
                          name=f"{prefix}_ref_conv_{index}")(x)
        x = activation_layer(config.activation, config.lrelu_alpha,
                             f"{prefix}_ref_act_{index}")(x)
    return layers.GlobalAveragePooling2D(name=f"{prefix}_ref_global")(x)


@keras.saving.register_keras_serializable(package="simgan_histo")
class TileAndConcat(layers.Layer):
    """[x, v] → concat(x, v tiled over x's H×W) on the channel axis; H, W may be dynamic."""

    def call(self, inputs):
        x, vector = inputs
        shape = ops.shape(x)
        vector = ops.cast(vector, x.dtype)
        tiled = ops.broadcast_to(vector[:, None, None, :],
                                 (shape[0], shape[1], shape[2], ops.shape(vector)[-1]))
        return ops.concatenate([x, tiled], axis=-1)

    def compute_output_shape(self, input_shape):
        x_shape, vector_shape = input_shape
        channels = None
        if x_shape[-1] is not None and vector_shape[-1] is not None:
            channels = x_shape[-1] + vector_shape[-1]
        return tuple(x_shape[:-1]) + (channels,)


def tile_features(x, features, prefix: str):
    """Tiles (B, C) `features` over the H×W of `x` (B, H, W, D) and concatenates: (B, H, W, D+C).

    The main stream's own channels come first, the reference channels after them.
    """
    return TileAndConcat(name=f"{prefix}_ref_tile")([x, features])
