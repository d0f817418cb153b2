"""The schedule as a pure function of the iteration number, against hand-counted phases."""

import pytest

from simgan_histo import config as config_lib
from simgan_histo.training import schedule


def _gan():
    return config_lib.GanTrainConfig(
        refiner_warmup_steps=10, discriminator_warmup_steps=3, adversarial_steps=2,
        task_warmup_steps=4, joint_steps=5, task_final_steps=1, k_g=2, k_d=1, k_task=6)


def test_phases_follow_the_release_order_and_lengths():
    gan = _gan()
    phases = [schedule.iteration_at(step, gan).phase for step in range(25)]
    assert phases == (["refiner_warmup"] * 10 + ["disc_warmup"] * 3 + ["adversarial"] * 2
                      + ["task_warmup"] * 4 + ["joint"] * 5 + ["task_final"])
    assert schedule.total_iterations(gan) == 25
    with pytest.raises(ValueError, match="past the schedule"):
        schedule.iteration_at(25, gan)


def test_updates_per_iteration():
    gan = _gan()
    joint = schedule.iteration_at(20, gan)
    assert (joint.refiner_updates, joint.discriminator_updates, joint.task_updates) == (2, 1, 6)
    assert joint.adversarial and joint.push
    warm = schedule.iteration_at(0, gan)
    assert (warm.refiner_updates, warm.discriminator_updates, warm.task_updates) == (1, 0, 0)
    assert not warm.adversarial
    assert schedule.iteration_at(11, gan).discriminator_updates == 1
    assert schedule.iteration_at(16, gan).task_updates == 6


def test_buffer_pushes_start_in_the_last_tenth_of_the_refiner_warmup():
    gan = _gan()
    pushes = [schedule.iteration_at(step, gan).push for step in range(10)]
    assert pushes == [False] * 9 + [True]


def test_eta_weighs_each_phase_by_its_measured_or_estimated_cost():
    gan = _gan()  # updates per iteration: warm-ups 1, adversarial 3, task 6, joint 9, final 6
    assert schedule.updates_per_iteration("joint", gan) == 9
    assert schedule.remaining_seconds(0, 25, gan, {}) is None
    # Measured: refiner warm-up 2 s/iteration (2 s per update). Everything else by updates:
    # 9·2 (rest of warm-up) + 3·2 + 2·6 + 4·12 + 5·18 + 1·12 = 186.
    assert schedule.remaining_seconds(1, 25, gan, {"refiner_warmup": 2.0}) == 186.0
    # A measured joint phase (9 s/iteration: 1 s per update) enters the per-update mean
    # (2 + 1) / 2 = 1.5 s; from iteration 20 (joint) to 24: 4·9 + 1·(6·1.5).
    assert schedule.remaining_seconds(20, 25, gan, {"refiner_warmup": 2.0, "joint": 9.0}) == 45.0
    assert schedule.remaining_seconds(3, 2, gan, {"joint": 9.0}) == 0.0
