"""Latent densities in numpy: fit on f(train), sample, score, serialise.

A density is what turns a decoder into a generator: draw z ~ p(z), decode g(z).
The lecture fits a diagonal Gaussian N(m, diag(v)) and calls it "too simple";
the classes here share one small interface (fit / sample / log_prob /
to_dict / from_dict) so richer densities slot in without touching the CLI.
"""

from __future__ import annotations

from typing import Any, Union

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
            raise AetoolError(f"latent density: bad diagonal_gaussian parameters ({_one_line(e)})") from None
        _require_finite(cls.kind, mean=mean, var=var)
        if mean.ndim != 1 or mean.shape != var.shape or not np.all(var > 0):
            raise AetoolError("latent density: mean and var must be equal-length vectors with var > 0")
        return cls(mean, var)

    def _params(self) -> tuple[np.ndarray, np.ndarray]:
        if self.mean is None or self.var is None:
            raise AetoolError("latent density is not fitted")
        return self.mean, self.var


class GaussianMixture:
    """K full-covariance Gaussians fitted by EM: the latents of ten digit classes are not one blob.

    Fitted in float64 numpy (k-means++ start, a small ridge on each covariance
    so a collapsed component stays invertible); sampling and scoring need only
    numpy, like the rest of the runtime.
    """

    kind = "gaussian_mixture"

    def __init__(self, k: int = 10, weights: np.ndarray | None = None, means: np.ndarray | None = None,
                 covs: np.ndarray | None = None) -> None:
        if k < 1:
            raise AetoolError(f"a mixture needs at least one component, got {k}")
        self.k = k
        self.weights, self.means, self.covs = weights, means, covs
        if covs is not None:
            self._chol = _cholesky(covs)

    @property
    def dim(self) -> int:
        return int(self._params()[1].shape[1])

    def fit(self, z: np.ndarray, *, iters: int = 200, tol: float = 1e-6, seed: int = 0) -> "GaussianMixture":
        z = _as_rows(z)
        n, d = z.shape
        if n < self.k:
            raise AetoolError(f"cannot fit {self.k} components to {n} latents")
        rng = np.random.default_rng(seed)
        ridge = 1e-6 * float(np.mean(z.var(axis=0))) + 1e-12
        labels = _kmeans_pp_labels(z, self.k, rng)
        # responsibilities are kept component-major, (K, N): each component's column is then one
        # contiguous row. The work arrays are allocated once: a fresh (N, d) array per component
        # and iteration costs more in page faults than the arithmetic done in it.
        resp_t = (labels[None, :] == np.arange(self.k)[:, None]).astype(np.float64)
        log_joint_t, spare_t = np.empty((self.k, n)), np.empty((self.k, n))
        work = (np.empty((n, d)), np.empty((n, d)))
        last = -np.inf
        for _ in range(iters):
            self._m_step(z, resp_t, ridge, work[0], spare_t)
            self._log_joint_t(z, log_joint_t, work)
            log_norm = _logsumexp_t(log_joint_t, spare_t)
            np.subtract(log_joint_t, log_norm, out=resp_t)
            np.exp(resp_t, out=resp_t)
            # a responsibility below the smallest normal double (< 1e-308) is zero to any precision the
            # M-step can see, but as a subnormal it makes every product with it many times slower
            resp_t[resp_t < _TINY] = 0.0
            mean_ll = float(log_norm.mean())
            if mean_ll - last < tol * max(1.0, abs(mean_ll)):
                break
            last = mean_ll
        self._m_step(z, resp_t, ridge, work[0], spare_t)
        return self

    def _m_step(self, z: np.ndarray, resp_t: np.ndarray, ridge: float, work: np.ndarray | None = None,
                spare_t: np.ndarray | None = None) -> None:
        """Weights, means and ridged covariances from (K, N) responsibilities."""
        mass = resp_t.sum(axis=1) + 1e-12
        self.weights = mass / mass.sum()
        self.means = (resp_t @ z) / mass[:, None]
        d = z.shape[1]
        covs = np.empty((self.k, d, d))
        ridge_eye = ridge * np.eye(d)
        work = np.empty(z.shape) if work is None else work
        root_resp = np.sqrt(resp_t, out=spare_t)
        # one component at a time: an (N, d) block stays in cache, where an (N, K, d) one would not;
        # sum_n r_n c_n c_n^T as (sqrt(r) c)^T (sqrt(r) c), a product numpy hands to BLAS as one
        # symmetric rank-k update (half the multiplications of a general product)
        for j in range(self.k):
            c = np.subtract(z, self.means[j], out=work)
            c *= root_resp[j][:, None]
            covs[j] = c.T @ c / mass[j] + ridge_eye
        self.covs = covs
        self._chol = _cholesky(covs)

    def _log_joint_t(self, z: np.ndarray, out: np.ndarray | None = None,
                     work: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """log w_j + log N(z | mu_j, Sigma_j), component-major: shape (K, N)."""
        weights, means, _ = self._params()
        n, d = z.shape
        # Mahalanobis distance |L^-1 (z - mu)|^2 through the inverse Cholesky factor, formed once
        # per component (K tiny d x d inverses) so each component costs one (N, d) x (d, d) product
        inv_chol_t = np.linalg.inv(self._chol).transpose(0, 2, 1)
        half_logdet = np.log(np.diagonal(self._chol, axis1=1, axis2=2)).sum(axis=1)
        out = np.empty((self.k, n)) if out is None else out
        c, y = (np.empty((n, d)), np.empty((n, d))) if work is None else work
        for j in range(self.k):
            np.subtract(z, means[j], out=c)
            np.matmul(c, inv_chol_t[j], out=y)
            np.einsum("nd,nd->n", y, y, out=out[j])
        out *= -0.5
        out += (np.log(weights) - half_logdet - 0.5 * d * np.log(2 * np.pi))[:, None]
        return out

    def _log_joint(self, z: np.ndarray) -> np.ndarray:
        """log w_j + log N(z | mu_j, Sigma_j), shape (N, K)."""
        return self._log_joint_t(z).T

    def sample(self, n: int, rng: np.random.Generator | int | None = None) -> np.ndarray:
        weights, means, _ = self._params()
        rng = np.random.default_rng(rng)
        comp = rng.choice(self.k, size=n, p=weights)
        eps = rng.standard_normal((n, means.shape[1]))
        z = means[comp] + np.einsum("nij,nj->ni", self._chol[comp], eps)
        return z.astype(np.float32)

    def log_prob(self, z: np.ndarray) -> np.ndarray:
        self._params()
        return _logsumexp(self._log_joint(_as_rows(z)))

    def to_dict(self) -> dict[str, Any]:
        weights, means, covs = self._params()
        return {"kind": self.kind, "weights": weights.tolist(), "means": means.tolist(), "covs": covs.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "GaussianMixture":
        try:
            weights = np.asarray(d["weights"], dtype=np.float64)
            means = np.asarray(d["means"], dtype=np.float64)
            covs = np.asarray(d["covs"], dtype=np.float64)
        except (KeyError, TypeError, ValueError) as e:
            raise AetoolError(f"latent density: bad gaussian_mixture parameters ({_one_line(e)})") from None
        _require_finite(cls.kind, weights=weights, means=means, covs=covs)
        k = weights.shape[0] if weights.ndim == 1 else 0
        if k < 1 or means.ndim != 2 or means.shape[0] != k or covs.shape != (k, means.shape[1], means.shape[1]) \
                or not np.all(weights > 0) or not abs(weights.sum() - 1) < 1e-6:
            raise AetoolError("latent density: gaussian_mixture needs K weights summing to 1, K means and K dxd covariances")
        # the Cholesky factor reads one triangle only: an asymmetric matrix would be silently half-used
        if not np.allclose(covs, covs.transpose(0, 2, 1), rtol=1e-9, atol=1e-12 * float(np.abs(covs).max())):
            raise AetoolError("latent density: gaussian_mixture covariances must be symmetric")
        return cls(k, weights, means, covs)

    def _params(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self.weights is None or self.means is None or self.covs is None:
            raise AetoolError("latent density is not fitted")
        return self.weights, self.means, self.covs


_TINY = np.finfo(np.float64).tiny


def _cholesky(covs: np.ndarray) -> np.ndarray:
    try:
        return np.linalg.cholesky(covs)
    except np.linalg.LinAlgError:
        raise AetoolError("latent density: a mixture covariance is not positive definite") from None


def _logsumexp(a: np.ndarray) -> np.ndarray:
    top = a.max(axis=1)
    return top + np.log(np.exp(a - top[:, None]).sum(axis=1))


def _logsumexp_t(a: np.ndarray, work: np.ndarray | None = None) -> np.ndarray:
    """log sum_j exp(a[j, n]) for component-major (K, N) ``a``; ``work`` (like ``a``) is overwritten."""
    top = a.max(axis=0)
    work = np.subtract(a, top, out=work)
    np.exp(work, out=work)
    return top + np.log(work.sum(axis=0))


def _kmeans_pp_labels(z: np.ndarray, k: int, rng: np.random.Generator, rounds: int = 10) -> np.ndarray:
    """k-means++ seeding and a few Lloyd rounds: a start EM does not get stuck in."""
    centres = [z[rng.integers(len(z))]]
    dist = ((z - centres[0]) ** 2).sum(axis=1)
    for _ in range(1, k):
        centres.append(z[rng.choice(len(z), p=dist / dist.sum())] if dist.sum() > 0 else z[rng.integers(len(z))])
        dist = np.minimum(dist, ((z - centres[-1]) ** 2).sum(axis=1))
    c = np.stack(centres)
    dist = np.empty((k, len(z)))
    labels = None
    for _ in range(rounds):
        for j in range(k):  # squared distances to one centre at a time: exactly the (N, K, d) sum, in cache
            t = z - c[j]
            np.square(t, out=t)
            t.sum(axis=1, out=dist[j])
        new_labels = dist.argmin(axis=0)
        if labels is not None and np.array_equal(new_labels, labels):
            break  # the same labels give the same centres: every further round would repeat this one
        labels = new_labels
        for j in range(k):
            if np.any(labels == j):
                c[j] = z[labels == j].mean(axis=0)
    return labels


def _require_finite(kind: str, **arrays: np.ndarray) -> None:
    for name, a in arrays.items():
        if not np.all(np.isfinite(a)):
            raise AetoolError(f"latent density: {kind} '{name}' holds NaN or infinite values")


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())[:200]


DENSITIES = {DiagonalGaussian.kind: DiagonalGaussian, GaussianMixture.kind: GaussianMixture}
Density = Union[DiagonalGaussian, GaussianMixture]  # what density_from_dict returns


def density_from_dict(d: dict[str, Any]) -> Density:
    """Rebuild whichever density a latent.json names."""
    kind = d.get("kind") if isinstance(d, dict) else None
    if kind not in DENSITIES:
        raise AetoolError(f"latent density: unknown kind {kind!r} (known: {', '.join(DENSITIES)})")
    return DENSITIES[kind].from_dict(d)


def _as_rows(z: np.ndarray) -> np.ndarray:
    """Latents arrive as (N, d, 1, 1) from the encoder; densities work on (N, d)."""
    z = np.asarray(z, dtype=np.float64)
    return z.reshape(z.shape[0], -1)
