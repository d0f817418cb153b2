"""The fresh refined set: the initial patches' stream, refined by the exported refiner."""

import json

import numpy as np
import pytest
import tensorflow as tf

from simgan_histo import config as config_lib
from simgan_histo import patch_file
from simgan_histo import pipeline
from simgan_histo import synthesis
from simgan_histo.training import export
from simgan_histo.training import gan_export
from simgan_histo.training import refined_set
from simgan_histo.training import refiner_run


@pytest.fixture(scope="module")
def trained(tmp_path_factory, monuseg):
    config = config_lib.tiny()
    tile = monuseg / "train" / "images" / "TCGA-18-5592-01Z-00-DX1.png"
    source = synthesis.TissueSource.from_paths(tile, config.synthesis, mpp=0.25)
    workdir = tmp_path_factory.mktemp("gan")
    summary = refiner_run.train_refiner(config, workdir, source)
    return config, source, summary


def test_refined_set_is_the_initial_stream_through_the_exported_refiner(tmp_path, trained):
    config, source, summary = trained
    initial = tmp_path / "initial.h5"
    refined = tmp_path / "refined.h5"
    synthesis.synthesize_to_file(source, initial, 5, seed=3, progress=False)
    record = refined_set.write_refined_set(source, summary["refiner_export"], refined, 5, seed=3)
    assert record["made"] == 5 and record["refiner"] == summary["refiner_export"]
    before = patch_file.PatchReader(initial).read(np.arange(5))
    after = patch_file.PatchReader(refined).read(np.arange(5))
    for name in ("reference", "mask", "labels", "source"):
        np.testing.assert_array_equal(after[name], before[name], err_msg=name)
    refine = export.load_serving_function(summary["refiner_export"])
    expected = gan_export.refined_to_uint8(refine(
        image=tf.constant(before["image"], tf.float32),
        reference=tf.constant(before["reference"], tf.float32)))
    np.testing.assert_array_equal(after["image"], expected)
    assert not np.array_equal(after["image"], before["image"])


def test_refiner_transform_refuses_a_model_that_is_not_a_refiner(tmp_path):
    from simgan_histo.models import task_net  # pylint: disable=import-outside-toplevel
    config = config_lib.tiny()
    path = export.export_task_model(task_net.build_task_net(config.task), tmp_path / "task",
                                    config, {"mpp": 0.25, "stride": 8})
    with pytest.raises(ValueError, match="refiner signature takes"):
        refined_set.refiner_transform(path)


def test_pipeline_trains_the_task_net_on_the_refined_set(tmp_path, monuseg):
    config = config_lib.tiny().replace(task={"training_patches": "refined"},
                                       gan={"buffer_capacity": 24})
    tiles = sorted((monuseg / "train" / "images").glob("*.png"))[:2]
    records = pipeline.run_labelfree(config, tmp_path / "run", tiles, mpp=0.25)
    refined = records["refined"]
    assert refined["made"] == 24 and refined["patches"].endswith("refined/patches.h5")
    assert json.loads((tmp_path / "run" / "refined" / pipeline.DONE).read_text())["made"] == 24
    # The task net's weights were re-scored for the refined set, one per patch.
    assert np.load(records["task"]["rescored_weights"]).shape == (24,)
    again = pipeline.run_labelfree(config, tmp_path / "run", tiles, mpp=0.25)
    assert again["refined"] == refined  # a rerun reuses the finished stage


def test_pipeline_validates_on_fresh_refined_patches_from_their_own_stream(tmp_path, monuseg):
    config = config_lib.tiny().replace(task={"validation_patches": "fresh",
                                             "max_validation_patches": 6})
    tiles = sorted((monuseg / "train" / "images").glob("*.png"))[:2]
    records = pipeline.run_labelfree(config, tmp_path / "run", tiles, mpp=0.25)
    held = records["validation"]
    assert held["made"] == 6 and held["refiner"] == records["refiner"]["refiner_export"]
    selection = records["task"]["selection"]
    assert selection["validation"] == f"synthetic:{held['patches']}"
    # The stream is the seed's validation stream, refined: not the training patches.
    source = synthesis.TissueSource.from_paths(tiles, config.synthesis, mpp=0.25)
    initial = synthesis.make_batch(source, config.runtime.seed + pipeline.VALIDATION_STREAM,
                                   range(6))
    stored = patch_file.PatchReader(held["patches"]).read(np.arange(6))
    np.testing.assert_array_equal(stored["labels"], initial["labels"])
    assert not np.array_equal(stored["image"], initial["image"])
    training = patch_file.PatchReader(records["refiner"]["patches"]).read(np.arange(1))
    assert not any(np.array_equal(training["labels"][0], labels) for labels in stored["labels"])
