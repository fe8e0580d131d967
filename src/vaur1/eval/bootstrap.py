"""Percentile-bootstrap 95% intervals: the one rule every metric, score and paired difference uses.

Points (0-100) for the task metrics and gains, two decimals; the reasoning scores keep their own
scale (judge 0-10, offline 0-1) with four decimals.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

RESAMPLES = 1000
SEED = 0


def percent(value: float | None) -> float | None:
    """A fraction as points with two decimals."""
    return None if value is None else round(100 * float(value), 2)


def percentile_interval(statistics: np.ndarray, scale: float = 100.0, digits: int = 2) -> list[float]:
    """The 95% percentile interval of bootstrap statistics, times `scale` (fractions -> points)."""
    low, high = np.percentile(statistics, [2.5, 97.5])
    return [round(scale * float(low), digits), round(scale * float(high), digits)]


def mean_with_ci(
    values: np.ndarray, rng: np.random.Generator, resamples: int
) -> tuple[float | None, list | None]:
    """The mean of fractions in points, with its interval; (None, None) for no values."""
    if len(values) == 0:
        return None, None
    draws = rng.integers(0, len(values), size=(resamples, len(values)))
    return percent(values.mean()), percentile_interval(values[draws].mean(axis=1))


def statistic_with_ci(
    n: int, statistic: Callable[[np.ndarray], float], rng: np.random.Generator, resamples: int
) -> tuple[float | None, list | None]:
    """`statistic(indices)` over all n items in points, with its interval over resampled indices."""
    if n == 0:
        return None, None
    values = np.array([statistic(rng.integers(0, n, size=n)) for _ in range(resamples)])
    return percent(statistic(np.arange(n))), percentile_interval(values)


def mean_interval(values: Sequence[float], resamples: int, seed: int) -> list[float] | None:
    """The interval of the mean on the values' own scale (four decimals), or None for no values."""
    if not values:
        return None
    data = np.asarray(values, dtype=float)
    draws = np.random.default_rng(seed).integers(0, len(data), size=(resamples, len(data)))
    return percentile_interval(data[draws].mean(axis=1), scale=1.0, digits=4)
