"""Run budgets: how many steps of each training phase fit in a number of CPU minutes.

Used by `benchmarks/labelfree_reproduction.py --budget_min`; the step times are measured, not
derived from FLOPs, for cpu_small-sized networks.
"""

# Seconds per iteration of each GAN phase, and per task-net step, with cpu_small's networks
# on this idle 2-core CPU (demo runs; BENCHMARKS.md "GAN training"). paper_2017 and
# release_2019 scale by their joint-iteration FLOPs (BENCHMARKS.md "Model FLOPs per preset");
# tiny is bound by per-step overhead, not FLOPs, so its factor is a rough guess.
PHASE_SECONDS = {"refiner_warmup_steps": 0.73, "discriminator_warmup_steps": 0.62,
                 "adversarial_steps": 4.1, "task_warmup_steps": 1.95, "joint_steps": 5.4,
                 "task_final_steps": 1.95}
TASK_STEP_SECONDS = 0.65
COST_VS_CPU_SMALL = {"tiny": 0.05, "cpu_small": 1.0, "demo": 1.0,
                     "paper_2017": 9.45 / 0.274, "release_2019": 27.2 / 0.274}


def estimated_minutes(config) -> float:
    """Idle-machine minutes of the GAN and task-net stages of `config` on this CPU."""
    gan = sum(getattr(config.gan, phase) * seconds for phase, seconds in PHASE_SECONDS.items())
    task = config.task.train_steps * TASK_STEP_SECONDS
    return COST_VS_CPU_SMALL[config.preset] * (gan + task) / 60.0


def scaled_config(config, budget_min, task_share=None):
    """The preset with its joint phase and task-net steps scaled to about `budget_min` minutes.

    Warm-ups keep their lengths (they bring each network to a sane start, whatever the
    budget) unless they alone exceed the budget; then every phase shrinks by one factor.
    The GAN's own final task-net phase is dropped: the pipeline trains the exported task
    net from the buffer, and the GAN's task net only serves the hard-example loss.
    `task_share` (0–1) gives that fraction of the minutes left after the warm-ups to the
    task net and the rest to the joint phase; by default both keep the preset's ratio.
    """
    if task_share is not None and not 0.0 < task_share < 1.0:
        raise ValueError(f"task_share must lie in (0, 1), got {task_share}")
    config = config.replace(gan={"task_final_steps": 0})
    if budget_min is None:
        return config
    warmups = [phase for phase in PHASE_SECONDS if phase not in ("joint_steps", "task_final_steps")]
    total = estimated_minutes(config)
    cost = COST_VS_CPU_SMALL[config.preset] / 60.0  # minutes per idle cpu_small second
    fixed = cost * sum(getattr(config.gan, phase) * PHASE_SECONDS[phase] for phase in warmups)
    if fixed < budget_min:
        scale, warm_scale = (budget_min - fixed) / (total - fixed), 1.0
    else:
        scale = warm_scale = budget_min / total
    phases = {phase: max(1, round(getattr(config.gan, phase) * warm_scale)) for phase in warmups}
    joint = config.gan.joint_steps * scale
    task = config.task.train_steps * scale
    if task_share is not None:
        rest = joint * PHASE_SECONDS["joint_steps"] + task * TASK_STEP_SECONDS
        joint = rest * (1.0 - task_share) / PHASE_SECONDS["joint_steps"]
        task = rest * task_share / TASK_STEP_SECONDS
    phases["joint_steps"] = max(1, round(joint))
    return config.replace(gan=phases, task={"train_steps": max(2, round(task))})
