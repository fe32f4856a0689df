"""Latent densities in numpy: fit on f(train), sample, score.

A density is what turns a decoder into a generator: draw z ~ p(z), decode g(z).
The lecture fits a diagonal Gaussian N(m, diag(v)) and calls it "too simple";
the classes here share one small interface so richer densities slot in without
touching the CLI.  It follows scikit-learn's conventions: hyper-parameters in
``__init__``, ``fit(z)`` returns the estimator, fitted arrays end in ``_``, and
``score_samples(z)`` is the log-density of each row; ``sample(n, rng)`` returns
the draws alone (scikit-learn's also returns component labels).

What latent.json stores of a density (field names, shapes, validation) is the
bundle contract's, :mod:`aetool.bundle_format` (``DiagonalGaussianParams``,
``GaussianMixtureParams``); here is only the math, and ``to_params`` /
``from_params`` cross between the two.
"""

from __future__ import annotations

from typing import Any, Union

import numpy as np

from .bundle_format import DensityParams, DiagonalGaussianParams, GaussianMixtureParams, density_params_from_dict
from .errors import AetoolError

VAR_FLOOR = 1e-12  # a dead latent unit would otherwise give a zero variance


class DiagonalGaussian:
    """N(mean_, diag(var_)) fitted by maximum likelihood (the lecture's m-hat, Delta-hat)."""

    kind = DiagonalGaussianParams.kind
    mean_: np.ndarray
    var_: np.ndarray

    @property
    def dim(self) -> int:
        return int(self._params()[0].shape[0])

    def fit(self, z: np.ndarray) -> "DiagonalGaussian":
        z = _as_rows(z)
        self.mean_ = z.mean(axis=0)
        self.var_ = np.maximum(z.var(axis=0), VAR_FLOOR)
        return self

    def sample(self, n: int, rng: np.random.Generator | int | None = None) -> np.ndarray:
        mean, var = self._params()
        rng = np.random.default_rng(rng)
        eps = rng.standard_normal((n, mean.shape[0]))
        return (mean + eps * np.sqrt(var)).astype(np.float32)

    def score_samples(self, z: np.ndarray) -> np.ndarray:
        """log N(z | mean_, diag(var_)) of each row of ``z`` ((N, d) or the encoder's (N, d, 1, 1))."""
        mean, var = self._params()
        z = _as_rows(z)
        return -0.5 * (((z - mean) ** 2) / var + np.log(2 * np.pi * var)).sum(axis=1)

    def to_params(self) -> DiagonalGaussianParams:
        return DiagonalGaussianParams(*self._params())

    @classmethod
    def from_params(cls, params: DiagonalGaussianParams) -> "DiagonalGaussian":
        """The fitted density latent.json describes."""
        out = cls()
        out.mean_, out.var_ = params.mean, params.var
        return out

    def to_dict(self) -> dict[str, Any]:
        return self.to_params().to_dict()

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DiagonalGaussian":
        return cls.from_params(DiagonalGaussianParams.from_dict(d))

    def _params(self) -> tuple[np.ndarray, np.ndarray]:
        if not (hasattr(self, "mean_") and hasattr(self, "var_")):
            raise AetoolError("latent density is not fitted")
        return self.mean_, self.var_


class GaussianMixture:
    """K full-covariance Gaussians fitted by EM: the latents of ten digit classes are not one blob.

    Fitted in float64 numpy (k-means++ start, a small ridge on each covariance
    so a collapsed component stays invertible); sampling and scoring need only
    numpy, like the rest of the runtime.
    """

    kind = GaussianMixtureParams.kind
    weights_: np.ndarray  # (K,)
    means_: np.ndarray  # (K, d)
    covariances_: np.ndarray  # (K, d, d)

    def __init__(self, n_components: int = 10, *, max_iter: int = 200, tol: float = 1e-6, ridge: float = 1e-6,
                 random_state: int | None = 0) -> None:
        """``ridge`` times the latents' mean variance is added to each covariance; EM stops after
        ``max_iter`` rounds or when the mean log-likelihood gains less than ``tol`` (relative);
        ``random_state`` seeds the k-means++ start, so a fit is reproducible."""
        self.n_components = n_components
        self.max_iter = max_iter
        self.tol = tol
        self.ridge = ridge
        self.random_state = random_state

    @property
    def dim(self) -> int:
        return int(self._params()[1].shape[1])

    def fit(self, z: np.ndarray) -> "GaussianMixture":
        z = _as_rows(z)
        n, d = z.shape
        k = self.n_components
        if k < 1:
            raise AetoolError(f"a mixture needs at least one component, got {k}")
        if n < k:
            raise AetoolError(f"cannot fit {k} components to {n} latents")
        rng = np.random.default_rng(self.random_state)
        ridge = self.ridge * float(np.mean(z.var(axis=0))) + 1e-12
        labels = _kmeans_pp_labels(z, k, rng)
        # responsibilities are kept component-major, (K, N): each component's column is then one
        # contiguous row. The work arrays are allocated once: a fresh (N, d) array per component
        # and iteration costs more in page faults than the arithmetic done in it.
        resp_t = (labels[None, :] == np.arange(k)[:, None]).astype(np.float64)
        log_joint_t, spare_t = np.empty((k, n)), np.empty((k, n))
        work = (np.empty((n, d)), np.empty((n, d)))
        last = -np.inf
        for _ in range(self.max_iter):
            self._m_step(z, resp_t, ridge, work[0], spare_t)
            self._log_joint_t(z, log_joint_t, work)
            log_norm = _logsumexp_t(log_joint_t, spare_t)
            np.subtract(log_joint_t, log_norm, out=resp_t)
            np.exp(resp_t, out=resp_t)
            # a responsibility below the smallest normal double (< 1e-308) is zero to any precision the
            # M-step can see, but as a subnormal it makes every product with it many times slower
            resp_t[resp_t < _TINY] = 0.0
            mean_ll = float(log_norm.mean())
            if mean_ll - last < self.tol * max(1.0, abs(mean_ll)):
                break
            last = mean_ll
        self._m_step(z, resp_t, ridge, work[0], spare_t)
        return self

    def _m_step(self, z: np.ndarray, resp_t: np.ndarray, ridge: float, work: np.ndarray | None = None,
                spare_t: np.ndarray | None = None) -> None:
        """Weights, means and ridged covariances from (K, N) responsibilities."""
        mass = resp_t.sum(axis=1) + 1e-12
        self.weights_ = mass / mass.sum()
        self.means_ = (resp_t @ z) / mass[:, None]
        d = z.shape[1]
        covs = np.empty((self.n_components, d, d))
        ridge_eye = ridge * np.eye(d)
        work = np.empty(z.shape) if work is None else work
        root_resp = np.sqrt(resp_t, out=spare_t)
        # one component at a time: an (N, d) block stays in cache, where an (N, K, d) one would not;
        # sum_n r_n c_n c_n^T as (sqrt(r) c)^T (sqrt(r) c), a product numpy hands to BLAS as one
        # symmetric rank-k update (half the multiplications of a general product)
        for j in range(self.n_components):
            c = np.subtract(z, self.means_[j], out=work)
            c *= root_resp[j][:, None]
            covs[j] = c.T @ c / mass[j] + ridge_eye
        self.covariances_ = covs
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
        out = np.empty((self.n_components, n)) if out is None else out
        c, y = (np.empty((n, d)), np.empty((n, d))) if work is None else work
        for j in range(self.n_components):
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
        comp = rng.choice(self.n_components, size=n, p=weights)
        eps = rng.standard_normal((n, means.shape[1]))
        z = means[comp] + np.einsum("nij,nj->ni", self._chol[comp], eps)
        return z.astype(np.float32)

    def score_samples(self, z: np.ndarray) -> np.ndarray:
        """log sum_j w_j N(z | mu_j, Sigma_j) of each row of ``z`` ((N, d) or (N, d, 1, 1))."""
        self._params()
        return _logsumexp(self._log_joint(_as_rows(z)))

    def to_params(self) -> GaussianMixtureParams:
        return GaussianMixtureParams(*self._params())

    @classmethod
    def from_params(cls, params: GaussianMixtureParams) -> "GaussianMixture":
        """The fitted mixture latent.json describes (its K as ``n_components``)."""
        out = cls(params.n_components)
        out.weights_, out.means_, out.covariances_ = params.weights, params.means, params.covs
        out._chol = _cholesky(params.covs)
        return out

    def to_dict(self) -> dict[str, Any]:
        return self.to_params().to_dict()

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "GaussianMixture":
        return cls.from_params(GaussianMixtureParams.from_dict(d))

    def _params(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not all(hasattr(self, name) for name in ("weights_", "means_", "covariances_")):
            raise AetoolError("latent density is not fitted")
        return self.weights_, self.means_, self.covariances_


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


DENSITIES = {DiagonalGaussian.kind: DiagonalGaussian, GaussianMixture.kind: GaussianMixture}
Density = Union[DiagonalGaussian, GaussianMixture]  # what density_from_dict returns


def density_from_params(params: DensityParams) -> Density:
    """The density a typed latent.json entry describes, ready to sample and score."""
    return DENSITIES[params.kind].from_params(params)


def density_from_dict(d: dict[str, Any]) -> Density:
    """Rebuild whichever density a latent.json names (validated by its schema first)."""
    return density_from_params(density_params_from_dict(d))


def _as_rows(z: np.ndarray) -> np.ndarray:
    """Latents arrive as (N, d, 1, 1) from the encoder; densities work on (N, d)."""
    z = np.asarray(z, dtype=np.float64)
    return z.reshape(z.shape[0], -1)
