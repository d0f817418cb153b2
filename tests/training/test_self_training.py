"""Self-training: round steps, pseudo-labelled tissue folders, the two-round pipeline."""

import json
import types

import numpy as np
import pytest

from simgan_histo import config as config_lib
from simgan_histo import pipeline
from simgan_histo.evaluation import baseline
from simgan_histo.evaluation import predict_lib
from simgan_histo.training import self_training
from simgan_histo.training import task_data


def test_round_steps_by_hand():
    task = config_lib.TaskConfig(train_steps=1794, self_training_share=0.25)
    assert self_training.round_steps(task) == (1346, 448)  # 448.5 rounds to even
    assert self_training.round_steps(config_lib.TaskConfig(train_steps=10)) == (10, 0)
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match="self_training_share"):
            config_lib.TaskConfig(self_training_share=bad)


class ClassicalModel:
    """Stands in for an export: any object with `predict_labels(rgb)` labels the tiles."""

    def predict_labels(self, rgb):
        return baseline.segment(rgb, 0.25)


def _tile(name, rgb):
    return types.SimpleNamespace(name=name, rgb=rgb)


def test_pseudo_labelled_folder_round_trips_and_counts_skips(tmp_path, monuseg):
    rgb = predict_lib.read_rgb(monuseg / "train" / "images" / "TCGA-18-5592-01Z-00-DX1.png")
    tiles = [_tile("a.svs@0,512", rgb[:300, :300]), _tile("tiny", rgb[:50, :50]),
             _tile("glass", np.full((300, 300, 3), 240, np.uint8)),
             _tile("b.png", rgb[300:700, 200:600])]
    record = self_training.pseudo_label_tiles(ClassicalModel(), tiles, tmp_path / "pseudo",
                                              min_size=64)
    assert record["tiles"] == 2 and record["skipped"] == {"too_small": 1, "no_nucleus": 1}
    pairs = task_data.labeled_pairs(tmp_path / "pseudo")
    assert [name for name, _, _ in pairs] == ["00000_a.svs_0_512", "00003_b.png"]
    nuclei = 0
    for (_, image, labels), tile in zip(pairs, (tiles[0], tiles[3])):
        np.testing.assert_array_equal(predict_lib.read_rgb(image), tile.rgb)
        expected = baseline.segment(tile.rgb, 0.25)
        np.testing.assert_array_equal(predict_lib.read_labels(labels), expected)
        nuclei += int(expected.max())
    assert record["nuclei"] == nuclei > 20


def test_no_nucleus_anywhere_is_a_clear_error(tmp_path):
    glass = [_tile("glass", np.full((128, 128, 3), 240, np.uint8))]
    with pytest.raises(ValueError, match="found no nucleus in any of 1 tissue tiles"):
        self_training.pseudo_label_tiles(ClassicalModel(), glass, tmp_path / "pseudo")


def test_real_labeled_pairs_are_linked_in(tmp_path, monuseg):
    real = tmp_path / "real"
    for sub in ("images", "labels"):
        (real / sub).mkdir(parents=True)
        (real / sub / "x.png").symlink_to(monuseg / "train" / sub / "TCGA-18-5592-01Z-00-DX1.png")
    folder = tmp_path / "pseudo"
    for sub in ("images", "labels"):
        (folder / sub).mkdir(parents=True)
    assert self_training.link_labeled(real, folder) == 1
    assert self_training.link_labeled(real, folder) == 1  # a rerun replaces its links
    assert [name for name, _, _ in task_data.labeled_pairs(folder)] == ["real_x"]


def test_link_replaces_a_stale_link_and_a_file(tmp_path):
    source = tmp_path / "a.txt"
    source.write_text("a")
    stale = tmp_path / "out" / "link.txt"
    stale.parent.mkdir()
    stale.symlink_to(tmp_path / "gone.txt")  # broken: what a moved dataset leaves behind
    task_data.link(source, stale)
    assert stale.read_text() == "a" and stale.resolve() == source.resolve()
    plain = tmp_path / "new" / "file.txt"  # a missing folder is made
    task_data.link(source, plain)
    task_data.link(source, plain)  # idempotent
    assert plain.read_text() == "a"
    regular = tmp_path / "out" / "regular.txt"  # a plain file in the way is replaced too
    regular.write_text("old")
    task_data.link(source, regular)
    assert regular.is_symlink() and regular.read_text() == "a"


def test_pipeline_second_round_trains_on_the_pseudo_labelled_tissue(tmp_path, monuseg):
    # A 2-step tiny net finds no nucleus at real thresholds; at 0 its whole foreground is
    # nuclear, so the plumbing has instances to carry (their quality is not the point here).
    config = config_lib.tiny().replace(task={"train_steps": 4, "self_training_share": 0.5,
                                             "seg_threshold_grid": (0.0,),
                                             "max_area_px": 10 ** 7})
    tiles = sorted((monuseg / "train" / "images").glob("*.png"))[:2]
    records = pipeline.run_labelfree(config, tmp_path / "run", tiles, mpp=0.25)
    first, pseudo, final = records["first_round"], records["pseudo"], records["task"]
    assert first["export"].startswith(str(tmp_path / "run" / "task" / "export"))
    assert final["export"].startswith(str(tmp_path / "run" / "export"))
    assert final["init_weights"] == f"{first['export']}/task_net.keras"
    assert final["real_images"] == pseudo["tiles"] == 2  # both tissue tiles, labelled
    steps = [json.loads((tmp_path / "run" / stage / "config.json").read_text())["task"][
        "train_steps"] for stage in ("task", "self_training")]
    assert steps == [2, 2]
    labels = task_data.LabeledImages(pseudo["folder"]).labels
    assert sum(len(np.unique(l[l > 0])) for l in labels) == pseudo["nuclei"] > 0
    again = pipeline.run_labelfree(config, tmp_path / "run", tiles, mpp=0.25)
    assert again["pseudo"] == pseudo and again["task"] == final  # finished stages reused


def test_pseudo_labelled_tiles_are_not_counted_as_real_labeled_images():
    one_round = {"task": {"real_images": 16}}
    assert pipeline.real_labeled_images(one_round) == 16  # plus_real, one round
    assert pipeline.self_training_summary(one_round) is None
    two_rounds = {"task": {"real_images": 15},  # the second round saw 15 pseudo-labelled tiles
                  "pseudo": {"tiles": 15, "nuclei": 9000, "skipped": {}},
                  "first_round": {"selection": {"step": 1346}, "export": "e/1"}}
    assert pipeline.real_labeled_images(two_rounds) == 0
    assert pipeline.self_training_summary(two_rounds) == {
        "first_round": {"step": 1346}, "first_round_export": "e/1", "tiles": 15,
        "nuclei": 9000, "skipped": {}}
    two_rounds["pseudo"]["real_images"] = 16  # plus_real: real pairs linked into the folder
    assert pipeline.real_labeled_images(two_rounds) == 16
