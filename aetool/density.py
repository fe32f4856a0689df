"""Latent densities in numpy: fit on f(train), sample, score, serialise.

A density is what turns a decoder into a generator: draw z ~ p(z), decode g(z).
The lecture fits a diagonal Gaussian N(m, diag(v)) and calls it "too simple";
the classes here share one small interface (fit / sample / log_prob /
to_dict / from_dict) so richer densities slot in without touching the CLI.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import AetoolError


class DiagonalGaussian:
    """N(mean, diag(var)) fitted by maximum likelihood (the lecture's m-hat, Delta-hat)."""

    kind = "diagonal_gaussian"

    def __init__(self, mean: np.ndarray | None = None, var: np.ndarray | None = None) -> None:
        self.mean = None if mean is None else np.asarray(mean, dtype=np.float64)
        self.var = None if var is None else np.asarray(var, dtype=np.float64)

    @property
    def dim(self) -> int:
        return int(self._params()[0].shape[0])

    def fit(self, z: np.ndarray) -> "DiagonalGaussian":
        z = _as_rows(z)
        self.mean = z.mean(axis=0)
        # a floor keeps a dead latent unit from giving a zero variance
        self.var = np.maximum(z.var(axis=0), 1e-12)
        return self

    def sample(self, n: int, rng: np.random.Generator | int | None = None) -> np.ndarray:
        mean, var = self._params()
        rng = np.random.default_rng(rng)
        eps = rng.standard_normal((n, mean.shape[0]))
        return (mean + eps * np.sqrt(var)).astype(np.float32)

    def log_prob(self, z: np.ndarray) -> np.ndarray:
        mean, var = self._params()
        z = _as_rows(z)
        return -0.5 * (((z - mean) ** 2) / var + np.log(2 * np.pi * var)).sum(axis=1)

    def to_dict(self) -> dict[str, Any]:
        mean, var = self._params()
        return {"kind": self.kind, "mean": mean.tolist(), "var": var.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DiagonalGaussian":
        try:
            mean = np.asarray(d["mean"], dtype=np.float64)
            var = np.asarray(d["var"], dtype=np.float64)
        except (KeyError, TypeError, ValueError) as e:
            raise AetoolError(f"latent density: bad diagonal_gaussian parameters ({e})") from None
        if mean.ndim != 1 or mean.shape != var.shape or not np.all(var > 0):
            raise AetoolError("latent density: mean and var must be equal-length vectors with var > 0")
        return cls(mean, var)

    def _params(self) -> tuple[np.ndarray, np.ndarray]:
        if self.mean is None or self.var is None:
            raise AetoolError("latent density is not fitted")
        return self.mean, self.var


DENSITIES = {DiagonalGaussian.kind: DiagonalGaussian}


def density_from_dict(d: dict[str, Any]):
    """Rebuild whichever density a latent.json names."""
    kind = d.get("kind") if isinstance(d, dict) else None
    if kind not in DENSITIES:
        raise AetoolError(f"latent density: unknown kind {kind!r} (known: {', '.join(DENSITIES)})")
    return DENSITIES[kind].from_dict(d)


def _as_rows(z: np.ndarray) -> np.ndarray:
    """Latents arrive as (N, d, 1, 1) from the encoder; densities work on (N, d)."""
    z = np.asarray(z, dtype=np.float64)
    return z.reshape(z.shape[0], -1)
