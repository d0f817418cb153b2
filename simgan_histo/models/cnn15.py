"""The paper's 15-conv / 2-pool detection-segmentation CNN — OUR RECONSTRUCTION.

Paper §5: "a network with 15 convolutional layers and 2 pooling layers for nucleus
detection and segmentation"; the network itself was never released (the released code has
only the U-Net), so the layer widths, kernels and the way back to full resolution below
are our choices. Input and outputs are those of `models/unet.py`: `image` float32
(B, H, W, 3) in [-1, 1] with H, W multiples of 2**(levels − 1); outputs `logits`
(channel 0 detection, 1 segmentation), `detection`, `segmentation` (float32).

With `paper_2017`'s task config (filters 32-64-128, convs 5-5-4):

    conv 32@3×3 ×5 → maxpool 2 → conv 64@3×3 ×5 → maxpool 2 → conv 128@3×3 ×4
    → one linear 3×3 logit conv per head (1 conv of 2 channels, counted once) at 1/4
    resolution → bilinear ×4 up-sampling of the logits → sigmoid

i.e. 14 + 1 = 15 conv layers and 2 pooling layers, a plain (skip-free) stack as the
paper's count implies. Predicting at 1/4 resolution and interpolating the logits keeps the
layer count honest; boundaries are therefore smoother than the U-Net's.
"""

import keras
from keras import layers

from simgan_histo.config import TaskConfig
from simgan_histo.models import unet


def build_cnn15(config: TaskConfig, name: str = "task_net") -> keras.Model:
    """Builds the plain pooled CNN described in the module docstring (uncompiled)."""
    image = keras.Input((None, None, 3), name="image")
    x = image
    for level, (filters, convs) in enumerate(zip(config.filters, config.convs_per_level)):
        if level:
            x = layers.MaxPooling2D(2, name=f"{name}_pool_{level}")(x)
        x = unet.conv_block(x, filters, convs, config, f"{name}_stage_{level}")
    return keras.Model(image, unet.heads(x, name, upsample=config.stride, hv=config.hv_head),
                       name=name)


def count_layers(model: keras.Model) -> dict:
    """Counts conv and pooling layers, the two heads' logit convs counting as one conv."""
    convs = sum(isinstance(layer, layers.Conv2D) for layer in model.layers)
    pools = sum(isinstance(layer, layers.MaxPooling2D) for layer in model.layers)
    return {"conv": convs - (len(unet.HEADS) - 1), "pool": pools}
