"""Discriminator D(X, S): logit-map sizes, parameter counts, input-size validation."""

import dataclasses

import keras
import numpy as np
import pytest

from simgan_histo import config as config_lib
from simgan_histo.models import discriminator


def conv(kernel, cin, cout):
    return kernel * kernel * cin * cout + cout


def expected_parameters(config: config_lib.DiscriminatorConfig) -> int:
    """Parameter count read off the module docstring's layer table."""
    ref = config.reference
    total = conv(config.first_kernel_size, 3, config.first_filters)
    width = config.first_filters
    if config.use_reference:
        total += conv(ref.first_kernel_size, 3, ref.filters)
        total += ref.num_convs * conv(ref.kernel_size, ref.filters, ref.filters)
        width += ref.filters
    for filters, convs in zip(config.stage_filters, config.stage_convs):
        for _ in range(convs):
            total += conv(config.kernel_size, width, filters)
            width = filters
    for filters, kernel in zip(config.head_filters, config.head_kernel_sizes):
        total += conv(kernel, width, filters)
        width = filters
    return total + conv(1, width, 1)


def test_release_by_hand_and_its_5x5_map_at_400():
    config = config_lib.release_2019().discriminator
    model = discriminator.build_discriminator(config)
    # conv_0 896, reference 104,096, stages 76,864 + 153,744 + 281,792 + 448,240,
    # head 256,128 + 2 × 147,584, logits 129
    assert model.count_params() == 1617057 == expected_parameters(config)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    pools = [layer for layer in model.layers if isinstance(layer, keras.layers.AveragePooling2D)]
    assert (len(convs), len(pools)) == (21, 5)  # the release's counts, logit conv included
    out = model([np.zeros((1, 400, 400, 3), np.float32)] * 2)
    assert out.shape == (1, 5, 5, 1) and config.output_size(400) == 5


def test_release_needs_336_px():
    config = config_lib.release_2019().discriminator
    model = discriminator.build_discriminator(config, input_size=336)
    assert model.output.shape == (None, 1, 1, 1)
    with pytest.raises(ValueError, match="input_size=335: .* >= 336 px"):
        discriminator.build_discriminator(config, input_size=335)
    with pytest.raises(ValueError, match="patch_size=335: expected >= 336"):
        config_lib.release_2019().replace(synthesis=dict(patch_size=335))
    assert config.output_size(335) == 0


@pytest.mark.parametrize("preset", sorted(config_lib.PRESETS))
def test_parameters_and_map_per_preset(preset):
    config = config_lib.get_preset(preset)
    model = discriminator.build_discriminator(config.discriminator)
    assert model.count_params() == expected_parameters(config.discriminator)
    assert [i.name for i in model.inputs] == ["image", "reference"]
    assert all(layer.name.startswith("discriminator_") for layer in model.layers
               if not isinstance(layer, keras.layers.InputLayer))
    size = config.synthesis.patch_size
    side = config.discriminator.output_size(size)
    if preset in ("tiny", "cpu_small", "demo"):
        assert config.discriminator.padding == "same"
        assert side >= 4 and side == -(-size // 2 ** len(config.discriminator.stage_pools))
        out = model([np.zeros((2, size, size, 3), np.float32)] * 2)
        assert out.shape == (2, side, side, 1) and out.dtype == "float32"


def test_logits_have_no_activation():
    model = discriminator.build_discriminator(config_lib.tiny().discriminator)
    assert model.layers[-1].activation is keras.activations.linear
    images = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
    for bias in (-3.0, 7.0):  # a zero kernel leaves the bias: it must come out untouched
        model.layers[-1].set_weights([np.zeros((1, 1, 8, 1)), np.array([bias])])
        np.testing.assert_array_equal(model([images, images]), np.full((2, 8, 8, 1), bias))


def test_reference_matters_unless_ablated():
    config = config_lib.tiny().discriminator
    rng = np.random.default_rng(2)
    image = rng.uniform(-1, 1, (1, 32, 32, 3)).astype(np.float32)
    ref = rng.uniform(-1, 1, (1, 32, 32, 3)).astype(np.float32)
    model = discriminator.build_discriminator(config)
    assert not np.allclose(model([image, ref]), model([image, -ref]))
    ablated = discriminator.build_discriminator(dataclasses.replace(config, use_reference=False))
    np.testing.assert_array_equal(ablated([image, ref]), ablated([image, -ref]))
    assert ablated.count_params() == expected_parameters(
        dataclasses.replace(config, use_reference=False))
