"""Run budgets (`--budget_min`): warm-ups fixed, the joint phase and task steps scaled."""

import pytest

from simgan_histo import budget
from simgan_histo import config as config_lib


def test_budget_scales_joint_phase_and_task_steps_only():
    preset = config_lib.get_preset("cpu_small")
    config = budget.scaled_config(preset, 50)
    # Warm-ups by hand: 21·0.73 + 100·0.62 + 21·4.1 + 42·1.95 = 245.33 s; the other 2754.67 s
    # go to 2000 joint iterations (10800 s) and 10000 task steps (6500 s) scaled by 0.159229.
    for phase in ("refiner_warmup_steps", "discriminator_warmup_steps", "adversarial_steps",
                  "task_warmup_steps"):
        assert getattr(config.gan, phase) == getattr(preset.gan, phase)
    assert config.gan.joint_steps == 318
    assert config.task.train_steps == 1592
    assert config.gan.task_final_steps == 0
    assert budget.estimated_minutes(config) == pytest.approx(50, abs=0.1)


def test_budget_below_the_warmups_shrinks_every_phase():
    config = budget.scaled_config(config_lib.get_preset("cpu_small"), 2)
    # The preset alone: 245.33 s of warm-ups + 17300 s = 292.42 min.
    assert config.gan.refiner_warmup_steps == 1  # 21 · 2 / 292.42 rounds to 0, kept at 1
    assert config.gan.joint_steps == round(2000 * 2 / 292.42)
    assert budget.estimated_minutes(config) == pytest.approx(2, abs=0.2)


def test_no_budget_keeps_the_preset():
    preset = config_lib.get_preset("cpu_small")
    config = budget.scaled_config(preset, None)
    assert config.gan.joint_steps == preset.gan.joint_steps
    assert config.task.train_steps == preset.task.train_steps


def test_task_share_splits_what_the_warmups_leave():
    preset = config_lib.get_preset("cpu_small")
    config = budget.scaled_config(preset, 50, task_share=0.75)
    # 3000 s − 245.33 s of warm-ups = 2754.67 s: 3/4 at 0.65 s per task step = 3178.5 steps,
    # 1/4 at 5.4 s per joint iteration = 127.5 iterations.
    assert config.task.train_steps == 3178
    assert config.gan.joint_steps == 128
    assert config.gan.adversarial_steps == preset.gan.adversarial_steps
    assert budget.estimated_minutes(config) == pytest.approx(50, abs=0.1)


@pytest.mark.parametrize("share", [0.0, 1.0, -0.2, 1.5])
def test_task_share_outside_the_open_interval_is_refused(share):
    with pytest.raises(ValueError, match="task_share"):
        budget.scaled_config(config_lib.get_preset("cpu_small"), 30, task_share=share)
