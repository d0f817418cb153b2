"""U-Net task net: shapes, names, heads, FLOPs of the tiny variant, bf16 outputs."""

import keras
import numpy as np
import pytest

from simgan_histo import config as config_lib
from simgan_histo.models import flops
from simgan_histo.models import task_net
from simgan_histo.models import unet


def test_tiny_unet_shapes_and_heads(tiny_config):
    model = unet.build_unet(tiny_config.task)
    image = np.random.default_rng(0).uniform(-1, 1, (2, 32, 48, 3)).astype(np.float32)
    out = model(image)
    assert set(out) == {"logits", "detection", "segmentation"}
    assert out["logits"].shape == (2, 32, 48, 2)
    assert out["detection"].shape == out["segmentation"].shape == (2, 32, 48, 1)
    logits = np.asarray(out["logits"])
    sigmoid = 1 / (1 + np.exp(-logits))
    np.testing.assert_allclose(np.asarray(out["detection"])[..., 0], sigmoid[..., 0], atol=1e-6)
    np.testing.assert_allclose(np.asarray(out["segmentation"])[..., 0], sigmoid[..., 1],
                               atol=1e-6)


def test_layer_names_are_prefixed(tiny_config):
    model = unet.build_unet(tiny_config.task, name="learner")
    names = [layer.name for layer in model.layers if layer.name != "image"]
    assert all(name.startswith("learner_") and "/" not in name for name in names)
    assert model.input.name == "image" or model.inputs[0].name == "image"


def test_release_unet_layout():
    model = unet.build_unet(config_lib.release_2019().task)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)
             and not isinstance(layer, keras.layers.Conv2DTranspose)]
    # Encoder 3+4+4+5+6, decoder 3+4+4+5, two 1-channel logit convs (= one 2-channel conv).
    assert len(convs) == 22 + 16 + 2
    widths = [layer.filters for layer in model.layers
              if layer.name.startswith("task_net_enc_") and hasattr(layer, "filters")]
    assert sorted(set(widths)) == [16, 32, 64, 128, 256]
    ups = [layer.filters for layer in model.layers
           if isinstance(layer, keras.layers.Conv2DTranspose)]
    assert ups == [256, 128, 64, 32]


def test_tiny_flops_match_the_formula(tiny_config):
    # tiny: enc_0 8@3×3 on 3 ch, pool, enc_1 16@3×3, up 16@2×2/2, concat 16+8, dec_0 8@3×3,
    # two 1-ch 3×3 logit convs. Per full-resolution pixel (multiply-add = 2 FLOP, no biases
    # counted by the profiler):
    per_pixel = 2 * (27 * 8 + (72 * 16) / 4 + 4 * 16 * 16 / 4 + 24 * 9 * 8 + 2 * 72)
    model = task_net.build_task_net(tiny_config.task)
    counted = flops.forward_flops(model, [(1, 64, 64, 3)]) / (64 * 64)
    # The profiler also counts activations, pooling and the sigmoid: within 10 %.
    assert counted == pytest.approx(per_pixel, rel=0.1)


def test_mixed_bfloat16_computes_in_bf16_but_returns_float32(tiny_config):
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = unet.build_unet(tiny_config.task)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    out = model(np.zeros((1, 16, 16, 3), np.float32))
    assert model.get_layer("task_net_enc_0_conv_0").compute_dtype == "bfloat16"
    assert all(out[key].dtype == "float32" for key in out)


def test_fully_convolutional_any_multiple_of_the_stride():
    config = config_lib.cpu_small().task
    model = unet.build_unet(config)
    out = model(np.zeros((1, config.stride * 3, config.stride * 5, 3), np.float32))
    assert out["segmentation"].shape == (1, config.stride * 3, config.stride * 5, 1)
