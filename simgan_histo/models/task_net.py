"""The task-specific CNN (paper §5): dispatch on `TaskConfig.architecture`.

Both builders share one interface: input `image` float32 in [-1, 1] (B, H, W, 3), H and W
multiples of `config.stride`; outputs `logits` (B, H, W, 2: detection, segmentation),
`detection` and `segmentation` (B, H, W, 1) sigmoid probabilities, all float32.
"""

import dataclasses

import keras

from simgan_histo.config import TaskConfig
from simgan_histo.models import cnn15
from simgan_histo.models import unet

BUILDERS = {"unet": unet.build_unet, "cnn15": cnn15.build_cnn15}


def build_task_net(config: TaskConfig, name: str = "task_net") -> keras.Model:
    """The configured task net (`unet`: released U-Net; `cnn15`: our paper reconstruction)."""
    if config.architecture not in BUILDERS:
        raise ValueError(f"TaskConfig.architecture={config.architecture!r}: expected one of "
                         f"{sorted(BUILDERS)}")
    return BUILDERS[config.architecture](config, name=name)


def without_hv_head(config: TaskConfig) -> TaskConfig:
    """`config` with no hv head (and so no "hv" watershed surface): the GAN's task net."""
    grid = tuple(surface for surface in config.flood_on_grid if surface != "hv")
    return dataclasses.replace(
        config, hv_head=False, flood_on_grid=grid or ("segmentation",),
        flood_on="segmentation" if config.flood_on == "hv" else config.flood_on)
