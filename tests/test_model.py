import numpy as np
import pytest
import torch

from aetool.density import DiagonalGaussian, GaussianMixture, density_from_dict
from aetool.errors import AetoolError
from aetool.training.model import AutoEncoder, count_parameters, reconstruction_loss


def test_lecture_parameter_counts_at_d16():
    model = AutoEncoder(16)
    assert count_parameters(model.encoder) == 60_336
    assert count_parameters(model.decoder) == 60_321


@pytest.mark.parametrize("d", [1, 2, 8, 32])
def test_shapes(d):
    model = AutoEncoder(d)
    x = torch.rand(3, 1, 28, 28)
    z = model.encoder(x)
    assert z.shape == (3, d, 1, 1)
    assert model.decoder(z).shape == (3, 1, 28, 28)


def test_loss_is_half_sse_per_batch():
    x = torch.zeros(4, 1, 28, 28)
    y = torch.full((4, 1, 28, 28), 0.5)
    # 784 pixels * 0.25 per pixel * 0.5, averaged over 4 images
    assert reconstruction_loss(x, y).item() == pytest.approx(0.5 * 784 * 0.25)


def test_bad_latent_size():
    with pytest.raises(ValueError):
        AutoEncoder(0)


def test_diagonal_gaussian_fit_sample_logprob_roundtrip():
    rng = np.random.default_rng(0)
    mean, std = np.array([1.0, -2.0, 0.5]), np.array([0.5, 2.0, 1.0])
    z = rng.normal(mean, std, size=(20_000, 3))
    g = DiagonalGaussian().fit(z.reshape(-1, 3, 1, 1))
    np.testing.assert_allclose(g.mean_, mean, atol=0.05)
    np.testing.assert_allclose(np.sqrt(g.var_), std, rtol=0.03)
    s = g.sample(20_000, rng=1)
    assert s.shape == (20_000, 3) and s.dtype == np.float32
    np.testing.assert_allclose(s.mean(0), mean, atol=0.05)
    # log density at the mean is the Gaussian normaliser
    expected = -0.5 * np.log(2 * np.pi * g.var_).sum()
    assert g.score_samples(g.mean_[None]).item() == pytest.approx(expected)
    g2 = density_from_dict(g.to_dict())
    np.testing.assert_array_equal(g2.mean_, g.mean_)
    np.testing.assert_array_equal(g.sample(5, rng=3), g2.sample(5, rng=3))


def test_gaussian_mixture_recovers_separated_clusters_and_beats_the_diagonal():
    rng = np.random.default_rng(0)
    centres = np.array([[-4.0, 0.0], [4.0, 0.0], [0.0, 5.0]])
    shares = np.array([0.5, 0.3, 0.2])
    # each cluster correlated: a full covariance is needed to fit it
    cov = np.array([[1.0, 0.8], [0.8, 1.0]])
    z = np.concatenate([rng.multivariate_normal(c, cov, size=int(20_000 * w)) for c, w in zip(centres, shares)])
    m = GaussianMixture(3, random_state=1).fit(z[:, :, None, None])
    order = np.argsort(m.weights_)[::-1]
    np.testing.assert_allclose(m.weights_[order], shares, atol=0.01)
    np.testing.assert_allclose(m.means_[order], centres, atol=0.05)
    np.testing.assert_allclose(m.covariances_[order[0]], cov, atol=0.05)
    held_out = np.concatenate([rng.multivariate_normal(c, cov, size=2000) for c in centres])
    assert m.score_samples(held_out).mean() > DiagonalGaussian().fit(z).score_samples(held_out).mean() + 0.5
    s = m.sample(30_000, rng=2)
    assert s.shape == (30_000, 2) and s.dtype == np.float32
    near = np.linalg.norm(s[:, None, :] - centres[None], axis=2).argmin(axis=1)
    np.testing.assert_allclose(np.bincount(near) / len(s), shares, atol=0.02)
    again = density_from_dict(m.to_dict())
    np.testing.assert_allclose(again.score_samples(held_out[:50]), m.score_samples(held_out[:50]), rtol=1e-12)
    np.testing.assert_array_equal(again.sample(7, rng=3), m.sample(7, rng=3))


@pytest.mark.parametrize("bad", [
    {"kind": "nope"},
    {"kind": "diagonal_gaussian", "mean": [0, 1], "var": [1]},
    {"kind": "diagonal_gaussian", "mean": [0], "var": [0]},
    {"kind": "diagonal_gaussian"},
    {"kind": "gaussian_mixture", "weights": [0.5, 0.5], "means": [[0.0]], "covs": [[[1.0]]]},
    {"kind": "gaussian_mixture", "weights": [0.7, 0.7], "means": [[0.0], [1.0]], "covs": [[[1.0]], [[1.0]]]},
    {"kind": "gaussian_mixture", "weights": [1.0], "means": [[0.0, 0.0]], "covs": [[[1.0, 2.0], [2.0, 1.0]]]},
    [],
])
def test_density_rejects_bad_dicts(bad):
    with pytest.raises(AetoolError):
        density_from_dict(bad)


@pytest.mark.parametrize("d,channels", [(2, 32), (16, 32), (8, 5)])
def test_conv_form_is_the_same_function(d, channels):
    from aetool.training.conv_form import conv_form, lecture_state

    torch.manual_seed(d)
    decoder = AutoEncoder(d, channels).decoder.eval()
    rewritten = conv_form(decoder)
    kinds = [type(m).__name__ for m in rewritten if not isinstance(m, torch.nn.ReLU)]
    # the stride-1 layer between feature maps and the last stride-2 layer change form (its ReLU moves inside)
    assert kinds == ["ConvTranspose2d", "ConvTranspose2d", "SubPixelConvTranspose", "Identity", "Conv2d", "ConvTranspose2d"]
    z = torch.randn(5, d, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(rewritten(z), decoder(z), atol=1e-5, rtol=1e-5)
    back = AutoEncoder(d, channels).decoder
    back.load_state_dict(lecture_state(back, rewritten.state_dict()))
    for key, value in decoder.state_dict().items():
        assert torch.equal(back.state_dict()[key], value), key
