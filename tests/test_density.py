"""Latent densities: reproducible sampling, correct scores, lossless serialisation, a mixture that finds clusters."""

from __future__ import annotations

import json

import numpy as np
import pytest

from aetool.bundle_format import GaussianMixtureParams
from aetool.density import DiagonalGaussian, GaussianMixture, density_from_dict
from aetool.errors import AetoolError


def _clusters(n_per: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Four well-separated 3-d Gaussian clusters with different shapes; returns (z, true means)."""
    rng = np.random.default_rng(seed)
    means = np.array([[-10.0, 0.0, 0.0], [0.0, 10.0, 0.0], [10.0, 0.0, 5.0], [0.0, -10.0, -5.0]])
    parts = []
    for j, m in enumerate(means):
        a = rng.normal(size=(3, 3)) * (0.3 + 0.2 * j)
        parts.append(m + rng.standard_normal((n_per, 3)) @ a.T)
    z = np.concatenate(parts)
    return z[rng.permutation(len(z))].astype(np.float32), means


def _reference_fit(z: np.ndarray, k: int, iters: int = 200, tol: float = 1e-6, seed: int = 0):
    """The mixture's EM written out the plain way (per-component loops, a solve per component):
    the fast implementation must land on the same mixture."""
    z = np.asarray(z, dtype=np.float64)
    n, d = z.shape
    rng = np.random.default_rng(seed)
    centres = [z[rng.integers(n)]]
    dist = ((z - centres[0]) ** 2).sum(axis=1)
    for _ in range(1, k):
        centres.append(z[rng.choice(n, p=dist / dist.sum())] if dist.sum() > 0 else z[rng.integers(n)])
        dist = np.minimum(dist, ((z - centres[-1]) ** 2).sum(axis=1))
    c = np.stack(centres)
    for _ in range(10):
        labels = ((z[:, None, :] - c[None]) ** 2).sum(axis=2).argmin(axis=1)
        for j in range(k):
            if np.any(labels == j):
                c[j] = z[labels == j].mean(axis=0)
    ridge = 1e-6 * float(np.mean(z.var(axis=0))) + 1e-12
    resp = np.eye(k)[labels]

    def m_step(resp):
        mass = resp.sum(axis=0) + 1e-12
        means = (resp.T @ z) / mass[:, None]
        covs = np.stack([(resp[:, j, None] * (z - means[j])).T @ (z - means[j]) / mass[j] + ridge * np.eye(d)
                         for j in range(k)])
        return mass / mass.sum(), means, covs

    last = -np.inf
    for _ in range(iters):
        w, mu, cov = m_step(resp)
        lj = np.empty((n, k))
        for j in range(k):
            chol = np.linalg.cholesky(cov[j])
            y = np.linalg.solve(chol, (z - mu[j]).T)
            lj[:, j] = np.log(w[j]) - 0.5 * (y * y).sum(axis=0) - np.log(np.diag(chol)).sum() - 0.5 * d * np.log(2 * np.pi)
        top = lj.max(axis=1)
        log_norm = top + np.log(np.exp(lj - top[:, None]).sum(axis=1))
        resp = np.exp(lj - log_norm[:, None])
        mean_ll = float(log_norm.mean())
        if mean_ll - last < tol * max(1.0, abs(mean_ll)):
            break
        last = mean_ll
    return m_step(resp)


def _direct_log_prob(g: GaussianMixture, z: np.ndarray) -> np.ndarray:
    """log sum_j w_j N(z | mu_j, Sigma_j), one point and one component at a time."""
    out = []
    for x in np.asarray(z, dtype=np.float64):
        terms = []
        for w, mu, cov in zip(g.weights_, g.means_, g.covariances_):
            diff = x - mu
            _, logdet = np.linalg.slogdet(cov)
            terms.append(np.log(w) - 0.5 * (diff @ np.linalg.inv(cov) @ diff + logdet + len(x) * np.log(2 * np.pi)))
        out.append(np.logaddexp.reduce(terms))
    return np.array(out)


@pytest.fixture(scope="module")
def fitted() -> tuple[GaussianMixture, np.ndarray, np.ndarray]:
    z, means = _clusters()
    return GaussianMixture(4, random_state=0).fit(z), z, means


def test_sampling_is_reproducible_with_a_seed(fitted):
    g, _, _ = fitted
    a, b = g.sample(500, rng=7), g.sample(500, rng=7)
    assert a.shape == (500, 3) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, g.sample(500, rng=8))
    np.testing.assert_array_equal(g.sample(5, np.random.default_rng(3)), g.sample(5, np.random.default_rng(3)))
    diag = DiagonalGaussian().fit(fitted[1])
    np.testing.assert_array_equal(diag.sample(100, rng=1), diag.sample(100, rng=1))


def test_log_prob_matches_the_direct_formula(fitted):
    g, z, _ = fitted
    pts = np.concatenate([z[:40], np.array([[0.0, 0.0, 0.0], [30.0, -30.0, 30.0]], dtype=np.float32)])
    np.testing.assert_allclose(g.score_samples(pts), _direct_log_prob(g, pts), rtol=1e-10, atol=1e-10)
    # latents as the encoder emits them, (N, d, 1, 1), score the same
    np.testing.assert_allclose(g.score_samples(pts.reshape(len(pts), 3, 1, 1)), g.score_samples(pts), rtol=0, atol=0)


def test_log_prob_of_a_small_hand_built_mixture():
    g = GaussianMixture.from_params(GaussianMixtureParams(
        weights=np.array([0.25, 0.75]), means=np.array([[0.0, 0.0], [3.0, 1.0]]),
        covs=np.array([[[1.0, 0.3], [0.3, 2.0]], [[0.5, 0.0], [0.0, 0.2]]])))
    pts = np.array([[0.0, 0.0], [3.0, 1.0], [1.0, -1.0], [10.0, 10.0]])
    np.testing.assert_allclose(g.score_samples(pts), _direct_log_prob(g, pts), rtol=1e-12)


def test_dict_round_trip(fitted):
    g, z, _ = fitted
    d = json.loads(json.dumps(g.to_dict()))
    assert d["kind"] == "gaussian_mixture"
    h = density_from_dict(d)
    assert isinstance(h, GaussianMixture) and h.n_components == 4 and h.dim == 3
    for name in ("weights_", "means_", "covariances_"):
        np.testing.assert_array_equal(getattr(h, name), getattr(g, name))
    np.testing.assert_array_equal(h.score_samples(z[:100]), g.score_samples(z[:100]))
    np.testing.assert_array_equal(h.sample(50, rng=2), g.sample(50, rng=2))

    diag = DiagonalGaussian().fit(z)
    e = density_from_dict(json.loads(json.dumps(diag.to_dict())))
    assert isinstance(e, DiagonalGaussian) and e.dim == 3
    np.testing.assert_array_equal(e.score_samples(z[:10]), diag.score_samples(z[:10]))

    with pytest.raises(AetoolError):
        density_from_dict({**g.to_dict(), "weights": [0.5, 0.5, 0.5, 0.5]})
    with pytest.raises(AetoolError):
        density_from_dict({"kind": "nope"})


def test_mixture_recovers_separated_clusters(fitted):
    g, z, true_means = fitted
    # sorted the same way (by rounded coordinates, so noise in a 0 coordinate cannot reorder them)
    order = np.lexsort(np.round(g.means_).T[::-1])
    truth = true_means[np.lexsort(true_means.T[::-1])]
    np.testing.assert_allclose(g.means_[order], truth, atol=0.25)
    np.testing.assert_allclose(g.weights_, 0.25, atol=0.01)
    assert g.score_samples(z).mean() > DiagonalGaussian().fit(z).score_samples(z).mean() + 1.0


def test_fit_is_deterministic_and_matches_the_plain_em():
    rng = np.random.default_rng(1)
    centres = rng.normal(0, 2.0, (6, 5))
    z = centres[rng.integers(6, size=3000)] + rng.standard_normal((3000, 5)) * rng.uniform(0.3, 1.2, 5)
    g = GaussianMixture(6, random_state=3).fit(z)
    h = GaussianMixture(6, random_state=3).fit(z)
    for name in ("weights_", "means_", "covariances_"):
        np.testing.assert_array_equal(getattr(g, name), getattr(h, name))
    w, mu, cov = _reference_fit(z, 6, seed=3)
    np.testing.assert_allclose(g.weights_, w, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(g.means_, mu, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(g.covariances_, cov, rtol=1e-9, atol=1e-9)


def test_fit_edge_cases():
    z = np.random.default_rng(0).normal(size=(10, 2))
    g = GaussianMixture(10).fit(z)  # one latent per component: still a valid mixture
    assert np.isfinite(g.score_samples(z)).all() and abs(g.weights_.sum() - 1) < 1e-12
    with pytest.raises(AetoolError):
        GaussianMixture(11).fit(z)
    with pytest.raises(AetoolError):
        GaussianMixture(2).score_samples(z)
    dead = np.c_[z, np.zeros(10)]  # a dead latent unit: the ridge keeps every covariance invertible
    assert np.isfinite(GaussianMixture(3).fit(dead).score_samples(dead)).all()
