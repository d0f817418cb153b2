"""The reproduction's protocols: which real images train and which test, on MoNuSeg 2018."""

import json

import pytest

from simgan_histo.evaluation import protocols


def test_monuseg_protocol_trains_on_the_30_train_images_and_tests_on_the_14_test_images(monuseg):
    train, tests = protocols.protocol_files(monuseg, "monuseg")
    assert len(train) == 30 and len(tests) == 14
    assert all(path.parent == monuseg / "train" / "images" for path in train)
    for image, labels in tests:
        assert image.parent == monuseg / "test" / "images" and labels.name == image.name
        assert image.exists() and labels.exists()


def test_kumar_protocol_follows_the_manifest_split_and_keeps_test_out_of_train(monuseg):
    split = json.loads((monuseg / "manifest.json").read_text())["kumar2017_split"]
    train, tests = protocols.protocol_files(monuseg, "kumar")
    assert [path.stem for path in train] == split["train"] and len(train) == 16
    assert [image.stem for image, _ in tests] == split["test_same"] + split["test_diff"]
    assert len(tests) == 14
    assert not {path.stem for path in train} & {image.stem for image, _ in tests}
    assert all(image.exists() and labels.exists() and labels.parent.name == "labels"
               for image, labels in tests)


def test_unknown_protocol_is_rejected(monuseg):
    with pytest.raises(ValueError, match="expected one of"):
        protocols.protocol_files(monuseg, "pannuke")
