"""Scalar random draws from a numpy Generator at a fraction of the cost of its methods.

`Generator.integers` and `.choice(p=...)` cost 2–15 µs per call; a patch makes ~100 scalar
draws, so they matter at 2 ms a patch. Each helper consumes exactly one `rng.random()`.
"""

from typing import Sequence


def uniform(rng, low: float, high: float) -> float:
    """U(low, high)."""
    return low + (high - low) * rng.random()


def randint(rng, low: int, high: int) -> int:
    """Integer uniform in [low, high) (high > low)."""
    return min(high - 1, low + int((high - low) * rng.random()))


def chance(rng, probability: float) -> bool:
    """True with the given probability."""
    return rng.random() < probability


def weighted_index(rng, weights: Sequence[float]) -> int:
    """Index i with probability weights[i] / sum(weights)."""
    target = rng.random() * sum(weights)
    for index, weight in enumerate(weights):
        target -= weight
        if target < 0:
            return index
    return len(weights) - 1
