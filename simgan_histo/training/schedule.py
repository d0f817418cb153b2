"""The release's training schedule as a pure function of the iteration number.

Phases, in order (release trainer.py; counts from GanTrainConfig):

| phase          | updates per iteration           | buffer push            |
|----------------|---------------------------------|------------------------|
| refiner_warmup | refiner (L_reg only)            | last 10 % of the phase |
| disc_warmup    | discriminator                   |                        |
| adversarial    | K_g refiner, K_d discriminator  | yes                    |
| task_warmup    | K_task task net (from buffer)   |                        |
| joint          | K_g refiner, K_d disc, K_task   | yes                    |
| task_final     | K_task task net                 |                        |

Because the phase is derived from the iteration number alone, a resumed run needs no
saved schedule state beyond the step counter.
"""

import dataclasses
from typing import Dict, List, Optional, Tuple

PHASES = ("refiner_warmup", "disc_warmup", "adversarial", "task_warmup", "joint", "task_final")
PUSH_START_FRACTION = 0.9  # release: pushes begin at k > 900 of 1000 warm-up steps


@dataclasses.dataclass(frozen=True)
class Iteration:
    """What one iteration of the schedule does."""

    phase: str
    refiner_updates: int
    discriminator_updates: int
    task_updates: int
    adversarial: bool  # whether the refiner's loss includes L_real (and L_hard)
    push: bool  # whether refined patches go to the history buffer


def phase_lengths(gan_config) -> List[Tuple[str, int]]:
    return [
        ("refiner_warmup", gan_config.refiner_warmup_steps),
        ("disc_warmup", gan_config.discriminator_warmup_steps),
        ("adversarial", gan_config.adversarial_steps),
        ("task_warmup", gan_config.task_warmup_steps),
        ("joint", gan_config.joint_steps),
        ("task_final", gan_config.task_final_steps),
    ]


def total_iterations(gan_config) -> int:
    return sum(length for _, length in phase_lengths(gan_config))


def iteration_at(step: int, gan_config) -> Iteration:
    """The updates of iteration `step` (0-based). Raises ValueError past the end."""
    if step < 0:
        raise ValueError(f"step={step}: expected >= 0")
    offset = step
    for phase, length in phase_lengths(gan_config):
        if offset < length:
            return _make(phase, offset, length, gan_config)
        offset -= length
    raise ValueError(f"step={step}: past the schedule's {total_iterations(gan_config)} iterations")


def _make(phase: str, offset: int, length: int, gan) -> Iteration:
    if phase == "refiner_warmup":
        push = offset >= int(PUSH_START_FRACTION * length)
        return Iteration(phase, 1, 0, 0, adversarial=False, push=push)
    if phase == "disc_warmup":
        return Iteration(phase, 0, 1, 0, adversarial=False, push=False)
    if phase == "adversarial":
        return Iteration(phase, gan.k_g, gan.k_d, 0, adversarial=True, push=True)
    if phase == "task_warmup":
        return Iteration(phase, 0, 0, gan.k_task, adversarial=False, push=False)
    if phase == "joint":
        return Iteration(phase, gan.k_g, gan.k_d, gan.k_task, adversarial=True, push=True)
    return Iteration(phase, 0, 0, gan.k_task, adversarial=False, push=False)


def updates_per_iteration(phase: str, gan_config) -> int:
    """Network updates (refiner + discriminator + task net) of one iteration of `phase`."""
    plan = _make(phase, 0, 1, gan_config)
    return plan.refiner_updates + plan.discriminator_updates + plan.task_updates


def remaining_seconds(start: int, end: int, gan_config,
                      phase_seconds: Dict[str, float]) -> Optional[float]:
    """Expected wall time of iterations start..end-1 (the progress bar's ETA).

    Phases cost very different times per iteration (≈ 10× between the refiner warm-up and
    the joint phase at cpu_small), so a plain iterations-per-second ETA is far off. Each
    phase runs at its measured seconds per iteration (`phase_seconds`); a phase not run yet
    at its number of updates × the mean measured seconds per update. None before any
    measurement.
    """
    rates = [seconds / updates_per_iteration(phase, gan_config)
             for phase, seconds in phase_seconds.items()
             if updates_per_iteration(phase, gan_config)]
    if not rates:
        return None
    per_update = sum(rates) / len(rates)
    total, offset = 0.0, 0
    for phase, length in phase_lengths(gan_config):
        count = min(end, offset + length) - max(start, offset)
        if count > 0:
            total += count * phase_seconds.get(
                phase, updates_per_iteration(phase, gan_config) * per_update)
        offset += length
    return total
