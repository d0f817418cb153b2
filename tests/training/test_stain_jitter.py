"""Task-time H&E jitter: identity when off, the stain scaling it claims, batches."""

import numpy as np
import pytest
from skimage import color

from simgan_histo import config as config_lib
from simgan_histo.training import task_data
from tests.training import toy_data


def _stained(hematoxylin, eosin):
    """RGB uint8 from known H and E concentrations (Beer–Lambert, skimage's stain vectors)."""
    density = (hematoxylin[..., None] * color.rgb_from_hed[0]
               + eosin[..., None] * color.rgb_from_hed[1])
    return np.clip(np.rint(255.0 * np.exp(-density)), 0, 255).astype(np.uint8)


class _Draws:
    """A generator stand-in whose two uniform draws are fixed."""

    def __init__(self, values):
        self.values = np.asarray(values, float)

    def random(self, size):
        assert size == 2
        return self.values


def test_amount_zero_is_the_identity():
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    out = task_data.jitter_stains(image, 0.0, np.random.default_rng(1))
    np.testing.assert_array_equal(out, image)


def test_hematoxylin_and_eosin_are_scaled_by_the_drawn_gains():
    rows, cols = np.indices((48, 48))
    hematoxylin = 0.2 + 0.8 * (rows / 47.0)  # optical densities, well inside uint8's range
    eosin = 0.1 + 0.4 * (cols / 47.0)
    image = _stained(hematoxylin, eosin)
    # Draws 1.0 and 0.25 with amount 0.2: H × (1 + 0.2), E × (1 − 0.1).
    out = task_data.jitter_stains(image, 0.2, _Draws([1.0, 0.25]))
    expected = _stained(1.2 * hematoxylin, 0.9 * eosin)
    assert np.abs(out.astype(int) - expected.astype(int)).max() <= 2


def test_batches_jitter_images_only_when_asked(tmp_path):
    path = toy_data.write_patch_file(tmp_path / "toy.h5", count=6)
    files = task_data.PatchFiles([path], 0.0, 64, seed=0)
    base = dict(batch_size=3, validation_fraction=0.0)
    plain = task_data.TaskBatches(config_lib.tiny().replace(task=base).task, files, seed=3)
    jittered = task_data.TaskBatches(
        config_lib.tiny().replace(task=dict(base, stain_jitter=0.3)).task, files, seed=3)
    a, b = plain.batch(4), jittered.batch(4)
    np.testing.assert_array_equal(a["mask"][0], b["mask"][0])  # the first sample's crop
    assert not np.array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(b["image"], jittered.batch(4)["image"])  # still f(seed, step)


def test_config_refuses_a_jitter_of_one_or_more():
    with pytest.raises(ValueError, match="stain_jitter"):
        config_lib.TaskConfig(stain_jitter=1.0)
