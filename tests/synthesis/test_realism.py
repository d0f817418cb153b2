"""Realism checks (issue 3) on patches from the fixture tiles, and the checks themselves."""

import numpy as np

from simgan_histo import synthesis
from simgan_histo.synthesis import realism


def test_checks_on_hand_made_patches():
    image = np.full((40, 40, 3), 230, np.uint8)
    mask = np.zeros((40, 40), np.uint8)
    image[10:20, 10:20] = (60, 30, 110)  # a dark purple "nucleus"
    mask[10:20, 10:20] = 1
    assert realism.otsu_dice(image, mask) == 1.0
    assert realism.nuclei_darker_in_h(image, mask)
    assert not realism.nuclei_darker_in_h(255 - image, mask)


def test_synthetic_patches_pass_the_realism_checks(source):
    batch = synthesis.make_batch(source, 11, range(80))
    report = realism.report(batch, source.tiles)
    assert report["patches_with_nuclei"] >= 60
    assert report["otsu_h_dice_mean"] >= 0.7
    assert report["nuclei_higher_h_fraction"] >= 0.95
    assert report["background_lab"]["within_1sd"], report["background_lab"]
