"""Rebuilding the validation set a recorded selection names."""

import numpy as np
import pytest

from simgan_histo.training import task_data
from simgan_histo.training import task_validation
from tests.training import toy_data


def test_each_recorded_name_rebuilds_its_own_set(tmp_path):
    training = toy_data.write_patch_file(tmp_path / "train.h5", count=8, seed=0)
    fresh = toy_data.write_patch_file(tmp_path / "fresh.h5", count=3, seed=9)
    labeled = toy_data.write_labeled_folder(tmp_path / "real", count=2, size=64)
    patches = task_data.PatchFiles([training], 0.25, 64, seed=0)
    held_out = task_validation.from_name("synthetic", patches)
    expected = patches.read(patches.validation_rows, ["image"])["image"]
    assert len(held_out) == len(patches.validation_rows) == 2
    for got, want in zip(held_out.images, expected):
        np.testing.assert_array_equal(got, want)
    whole = task_validation.from_name(f"synthetic:{fresh}", patches)
    assert whole.name == f"synthetic:{fresh}" and len(whole) == 3
    last = task_data.PatchFiles([fresh]).read(np.array([2]), ["labels"])["labels"][0]
    np.testing.assert_array_equal(whole.labels[2], last)
    real = task_validation.from_name(f"labeled:{labeled}", None)
    assert real.name == f"labeled:{labeled}" and len(real) == 2


def test_a_name_without_its_set_is_a_clear_error(tmp_path):
    training = toy_data.write_patch_file(tmp_path / "train.h5", count=4)
    with pytest.raises(ValueError, match="hold none out"):
        task_validation.from_name("synthetic", task_data.PatchFiles([training], 0.0, 64))
    with pytest.raises(ValueError, match="expected 'synthetic'"):
        task_validation.from_name("patches:x.h5", None)
