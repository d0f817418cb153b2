"""Pieces of the GAN loop that need no training: prefetched inputs, resume-config checks."""

import numpy as np
import pytest

from simgan_histo import config as config_lib
from simgan_histo import synthesis
from simgan_histo.training import gan_data
from simgan_histo.training import refiner_run


@pytest.fixture(scope="module")
def source(monuseg):
    tile = monuseg / "train" / "images" / "TCGA-18-5592-01Z-00-DX1.png"
    return synthesis.TissueSource.from_paths(tile, config_lib.tiny().synthesis, mpp=0.25)


def test_prefetched_batches_equal_batches_computed_on_the_spot(source):
    keys = [("synthetic", 5, "refiner", 0, 3), ("real", 5, "discriminator", 1, 2),
            ("synthetic", 5, "task", 2, 1)]
    ahead = gan_data.GanInputs(source, seed=3, prefetch=True)
    plain = gan_data.GanInputs(source, seed=3, prefetch=False)
    try:
        ahead.request(keys)
        pairs = [(ahead.synthetic(5, "refiner", 0, 3), plain.synthetic(5, "refiner", 0, 3)),
                 (ahead.real_pairs(5, 1, 2), plain.real_pairs(5, 1, 2)),
                 (ahead.synthetic(5, "task", 2, 1), plain.synthetic(5, "task", 2, 1))]
        assert ahead.counts == {"prefetched": 3, "on_the_spot": 0}
        # Not requested: computed on the spot, still the same batch.
        pairs.append((ahead.synthetic(6, "refiner", 0, 2), plain.synthetic(6, "refiner", 0, 2)))
        assert ahead.counts["on_the_spot"] == 1
    finally:
        ahead.close()
    for got, expected in pairs:
        assert sorted(got) == sorted(expected)
        for name in got:
            np.testing.assert_array_equal(got[name], expected[name], err_msg=name)
    other = plain.synthetic(5, "refiner", 1, 3)["image"]  # another update: another batch
    assert not np.array_equal(other, pairs[0][1]["image"])


def test_resuming_with_other_networks_is_refused_with_a_clear_message(workdir):
    config = config_lib.tiny()
    (workdir / "config.json").write_text(config.to_json())
    refiner_run.check_resume_config(config.replace(refiner={"filters": 16}), workdir)  # no ckpt
    (workdir / "checkpoints").mkdir()
    (workdir / "checkpoints" / "ckpt-3.index").write_bytes(b"")
    with pytest.raises(ValueError, match=r"\['refiner'\] settings differ"):
        refiner_run.check_resume_config(config.replace(refiner={"filters": 16}), workdir)
    # A longer schedule or another precision may resume.
    refiner_run.check_resume_config(config.replace(gan={"joint_steps": 50}), workdir)
    refiner_run.check_resume_config(config.replace(runtime={"precision": "mixed_bfloat16"}),
                                    workdir)
