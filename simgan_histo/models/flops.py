"""FLOP counts of Keras models, read off TensorFlow's graph profiler.

One multiply-add counts as 2 FLOP. A training step costs about 3× the forward pass
(forward, gradient w.r.t. activations, gradient w.r.t. weights).
"""

from typing import Sequence

import tensorflow as tf


def forward_flops(model, input_shapes: Sequence[Sequence[int]]) -> int:
    """Forward FLOPs of `model` for inputs of the given full shapes (batch included)."""
    specs = [tf.TensorSpec(shape, tf.float32) for shape in input_shapes]

    @tf.function
    def forward(*inputs):
        return model(list(inputs) if len(inputs) > 1 else inputs[0], training=False)

    graph = forward.get_concrete_function(*specs).graph
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    profile = tf.compat.v1.profiler.profile(graph, options=options)
    return int(profile.total_float_ops)
