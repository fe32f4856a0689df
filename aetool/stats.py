"""Exact binomial intervals without scipy: the runtime states how sure a measured rate is.

A false-positive rate measured on n images is a binomial proportion; its Clopper–Pearson interval
is the pair of beta quantiles below.  scipy has them, but scipy is no runtime dependency, so the
regularised incomplete beta is evaluated here by its continued fraction (modified Lentz, as in
Numerical Recipes' ``betacf``) and inverted by bisection, which cannot fail to converge because
I_x(a, b) is monotone in x.
"""

from __future__ import annotations

import math

_EPS = 1e-16
_TINY = 1e-300


def _continued_fraction(x: float, a: float, b: float) -> float:
    """The continued fraction of I_x(a, b), valid (fast) for x < (a + 1) / (a + b + 2)."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    # converges in O(sqrt(max(a, b))) terms; the cap only guards against a bug, never reached for n < 1e12
    for m in range(1, 10_000_000):
        m2 = 2 * m
        for num in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + num / c
            c = c if abs(c) > _TINY else _TINY
            delta = c * d
            h *= delta
        if abs(delta - 1.0) < _EPS:
            return h
    raise ArithmeticError(f"incomplete beta: no convergence for a={a}, b={b}, x={x}")  # pragma: no cover


def betainc(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b) for a, b > 0 and 0 <= x <= 1."""
    if not (a > 0 and b > 0):
        raise ValueError(f"betainc needs a, b > 0, got {a}, {b}")
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    # the prefactor in logs: for large a and b the powers alone under- or overflow
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _continued_fraction(x, a, b) / a
    return 1.0 - math.exp(log_front) * _continued_fraction(1.0 - x, b, a) / b


def beta_quantile(q: float, a: float, b: float) -> float:
    """x with I_x(a, b) = q, by bisection to the last bit (a few hundred halvings reach any double)."""
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"beta_quantile needs 0 <= q <= 1, got {q}")
    if q == 0.0:
        return 0.0
    if q == 1.0:
        return 1.0
    lo, hi = 0.0, 1.0
    for _ in range(1100):  # halving the bracket, relative to its size, ends where no double lies between
        mid = 0.5 * (lo + hi) if hi - lo > 1e-3 else math.sqrt(lo * hi) if lo > 0 else 0.5 * hi
        if mid <= lo or mid >= hi:
            break
        if betainc(a, b, mid) < q:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The exact (conservative) two-sided interval of a binomial rate seen as k successes in n trials."""
    if not (isinstance(n, int) and isinstance(k, int) and n >= 1 and 0 <= k <= n):
        raise ValueError(f"clopper_pearson needs integers 0 <= k <= n, n >= 1; got k={k}, n={n}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    tail = (1.0 - confidence) / 2.0
    lower = 0.0 if k == 0 else beta_quantile(tail, k, n - k + 1)
    upper = 1.0 if k == n else beta_quantile(1.0 - tail, k + 1, n - k)
    return lower, upper
