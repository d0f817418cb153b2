"""Reference branch: pooled features, tiling over H×W, minimum input size."""

import keras
import numpy as np
import pytest

from simgan_histo import config as config_lib
from simgan_histo.models import reference


def test_tile_features_repeats_the_vector_at_every_pixel_after_the_channels():
    x = np.arange(2 * 3 * 4 * 2, dtype=np.float32).reshape(2, 3, 4, 2)
    features = np.array([[10, 20, 30], [40, 50, 60]], np.float32)
    out = keras.ops.convert_to_numpy(reference.tile_features(x, features, "test"))
    assert out.shape == (2, 3, 4, 5)
    np.testing.assert_array_equal(out[..., :2], x)
    for sample in range(2):
        for row in range(3):
            for col in range(4):
                np.testing.assert_array_equal(out[sample, row, col, 2:], features[sample])


def test_tile_features_on_symbolic_inputs_of_unknown_size():
    x = keras.Input((None, None, 8))
    features = keras.Input((4,))
    model = keras.Model([x, features], reference.tile_features(x, features, "net"))
    assert model.output.shape == (None, None, None, 12)
    out = model([np.zeros((1, 5, 7, 8), np.float32), np.ones((1, 4), np.float32)])
    assert out.shape == (1, 5, 7, 12)
    assert model.layers[-1].name == "net_ref_tile"


def _branch(config, size=None):
    ref = keras.Input((size, size, 3))
    return keras.Model(ref, reference.reference_features(ref, config, "net"))


def test_release_branch_shape_parameters_and_names():
    config = config_lib.ReferenceBranchConfig()  # release: 32@4×4, pool 3/2, 4× 32@5×5, VALID
    model = _branch(config)
    expected = (4 * 4 * 3 * 32 + 32) + 4 * (5 * 5 * 32 * 32 + 32)
    assert model.count_params() == expected == 104096
    out = model(np.zeros((2, 400, 400, 3), np.float32))
    assert out.shape == (2, 32)
    names = [layer.name for layer in model.layers[1:]]
    assert all(name.startswith("net_ref_") for name in names), names
    assert sum(isinstance(layer, keras.layers.Conv2D) for layer in model.layers) == 5


def test_release_branch_minimum_size_is_exact():
    config = config_lib.ReferenceBranchConfig()
    assert config.min_input_size() == 38  # 38 −3 → 35 → pool 3/2 → 17 → −16 → 1
    assert _branch(config, 38).layers[-2].output.shape[1:3] == (1, 1)
    with pytest.raises(ValueError):
        _branch(config, 37)


def test_features_are_a_global_average():
    """Translating the content of a periodic reference leaves the SAME branch's vector alone."""
    config = config_lib.ReferenceBranchConfig(filters=4, first_kernel_size=1, num_convs=0,
                                              pool_size=1, padding="same")
    model = _branch(config)
    rng = np.random.default_rng(0)
    image = rng.uniform(-1, 1, (1, 8, 8, 3)).astype(np.float32)
    shifted = np.roll(image, (2, 2), axis=(1, 2))  # 1×1 convs and pool 1: translation-exact
    np.testing.assert_allclose(model(image), model(shifted), rtol=1e-5, atol=1e-6)
    # With a 1×1 conv and a 1×1 pool of stride 2, the vector is the mean of act(W·x + b)
    # over every other pixel of every other row.
    kernel, bias = model.get_layer("net_ref_conv_0").get_weights()
    pre = image[:, ::2, ::2].reshape(-1, 3) @ kernel.reshape(3, 4) + bias
    expected = np.where(pre > 0, pre, 0.2 * pre).mean(axis=0)
    np.testing.assert_allclose(model(image)[0], expected, rtol=1e-5, atol=1e-6)
