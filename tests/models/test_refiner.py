"""Refiner G(I, S): shapes, parameter counts per preset, residual clip, reference ablation."""

import dataclasses

import keras
import numpy as np
import pytest

from simgan_histo import config as config_lib
from simgan_histo.models import refiner


def conv(kernel, cin, cout):
    return kernel * kernel * cin * cout + cout


def expected_parameters(config: config_lib.RefinerConfig) -> int:
    """Parameter count read off Fig. 5 / the module docstring's layer table."""
    ref = config.reference
    total = conv(config.first_kernel_size, 3, config.filters)
    width = config.filters
    if config.use_reference:
        total += conv(ref.first_kernel_size, 3, ref.filters)
        total += ref.num_convs * conv(ref.kernel_size, ref.filters, ref.filters)
        width += ref.filters
    for _ in range(config.num_blocks):
        total += conv(config.kernel_size, width, config.filters)
        total += conv(config.kernel_size, config.filters, config.filters)
        if width != config.filters:
            total += conv(1, width, config.filters)  # the projection skip
        width = config.filters
    return total + conv(config.output_kernel_size, width, 3)


def test_release_parameter_count_by_hand():
    # pre 896 + reference 104,096 + block_0 (51,232 + 25,632 + skip 2,080)
    # + 4 blocks × 51,264 + conv_1 867
    model = refiner.build_refiner(config_lib.release_2019().refiner)
    assert model.count_params() == 896 + 104096 + 78944 + 4 * 51264 + 867 == 389859


@pytest.mark.parametrize("preset", sorted(config_lib.PRESETS))
def test_parameters_and_shapes_per_preset(preset):
    config = config_lib.get_preset(preset)
    model = refiner.build_refiner(config.refiner)
    assert model.count_params() == expected_parameters(config.refiner)
    assert [i.name for i in model.inputs] == ["image", "reference"]
    assert all(layer.name.startswith("refiner_") for layer in model.layers
               if not isinstance(layer, keras.layers.InputLayer))
    if preset in ("tiny", "cpu_small"):
        size = config.synthesis.patch_size
        out = model({"image": np.zeros((2, size, size, 3), np.float32),
                     "reference": np.zeros((2, size, size, 3), np.float32)})
        assert out.shape == (2, size, size, 3) and out.dtype == "float32"


def test_fully_convolutional_on_other_sizes():
    model = refiner.build_refiner(config_lib.tiny().refiner)
    out = model([np.zeros((1, 24, 40, 3), np.float32), np.zeros((1, 56, 32, 3), np.float32)])
    assert out.shape == (1, 24, 40, 3)


def test_output_is_the_clipped_residual_sum():
    model = refiner.build_refiner(config_lib.tiny().refiner)
    rng = np.random.default_rng(0)
    for layer in model.layers:  # large weights, so Δ pushes many pixels past ±1
        if layer.weights:
            layer.set_weights([w * 0 + rng.normal(0, 2, w.shape) for w in layer.get_weights()])
    image = rng.uniform(-1, 1, (2, 16, 16, 3)).astype(np.float32)
    ref = rng.uniform(-1, 1, (2, 16, 16, 3)).astype(np.float32)
    delta_model = keras.Model(model.inputs, model.get_layer("refiner_conv_1").output)
    delta = np.asarray(delta_model([image, ref]))
    out = np.asarray(model([image, ref]))
    np.testing.assert_allclose(out, np.clip(image + delta, -1, 1), rtol=1e-5, atol=1e-6)
    assert (np.abs(out) == 1).mean() > 0.1 and out.min() >= -1 and out.max() <= 1


def test_first_block_keeps_its_skip_with_a_projection():
    model = refiner.build_refiner(config_lib.release_2019().refiner)
    skip = model.get_layer("refiner_block_0_skip")
    assert skip.kernel.shape == (1, 1, 64, 32)
    names = {layer.name for layer in model.layers}
    assert "refiner_block_1_skip" not in names and "refiner_block_4_add" in names


def test_reference_matters_unless_ablated():
    config = config_lib.tiny().refiner
    rng = np.random.default_rng(1)
    image = rng.uniform(-1, 1, (1, 16, 16, 3)).astype(np.float32)
    ref_a = rng.uniform(-1, 1, (1, 16, 16, 3)).astype(np.float32)
    ref_b = -ref_a
    with_reference = refiner.build_refiner(config)
    assert not np.allclose(with_reference([image, ref_a]), with_reference([image, ref_b]))
    ablated = refiner.build_refiner(dataclasses.replace(config, use_reference=False))
    np.testing.assert_array_equal(ablated([image, ref_a]), ablated([image, ref_b]))
    assert not any("_ref_" in layer.name for layer in ablated.layers)
    assert ablated.count_params() == expected_parameters(
        dataclasses.replace(config, use_reference=False))


def test_static_input_size_is_validated():
    config = config_lib.release_2019().refiner
    with pytest.raises(ValueError, match="input_size=37: .* >= 38 px"):
        refiner.build_refiner(config, input_size=37)
    assert refiner.build_refiner(config, input_size=38).output.shape == (None, 38, 38, 3)


def test_mixed_precision_output_stays_float32():
    policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = refiner.build_refiner(config_lib.tiny().refiner)
        out = model([np.zeros((1, 16, 16, 3), np.float32)] * 2)
    finally:
        keras.mixed_precision.set_global_policy(policy)
    assert out.dtype == "float32"
    assert model.get_layer("refiner_block_0_conv_0").compute_dtype == "bfloat16"
