"""The 15-conv / 2-pool CNN (our reconstruction): layer counts, shapes, dispatch."""

import numpy as np
import pytest

from simgan_histo import config as config_lib
from simgan_histo.models import cnn15
from simgan_histo.models import task_net


def test_paper_2017_preset_has_15_convs_and_2_pools():
    config = config_lib.paper_2017().task
    assert config.architecture == "cnn15"
    model = task_net.build_task_net(config)
    assert cnn15.count_layers(model) == {"conv": 15, "pool": 2}


def test_outputs_at_full_resolution():
    config = config_lib.paper_2017().task
    model = cnn15.build_cnn15(config)
    out = model(np.zeros((2, 40, 24, 3), np.float32))
    assert out["logits"].shape == (2, 40, 24, 2)
    assert out["segmentation"].shape == out["detection"].shape == (2, 40, 24, 1)


def test_dispatch_and_unknown_architecture(tiny_config):
    import dataclasses

    config = dataclasses.replace(tiny_config.task, architecture="cnn15")
    model = task_net.build_task_net(config, name="cnn")
    assert all(layer.name.startswith("cnn_") for layer in model.layers[1:])
    with pytest.raises(ValueError, match="architecture"):
        config_lib.TaskConfig(architecture="vgg")
