"""FLOP counts against hand-computed convolution costs."""

import keras

from simgan_histo.models import flops


def test_conv_flops_match_the_formula():
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False)(inputs)
    model = keras.Model(inputs, x)
    expected = 2 * 32 * 32 * 3 * 3 * 3 * 8  # multiply-adds per output value, times outputs
    assert flops.forward_flops(model, [(1, 32, 32, 3)]) == expected
    assert flops.forward_flops(model, [(2, 32, 32, 3)]) == 2 * expected
