"""PCA, the optimum of the linear autoencoder, fitted into a run folder at any image size.

The top-d principal directions become a :class:`~aetool.training.model.PCAAutoEncoder`,
saved like any CNN run so export and every runtime command treat both families alike.

Images of up to :data:`EXACT_MAX_PIXELS` values get the exact closed form: the
covariance (pixels x pixels) summed chunk by chunk and decomposed with ``eigh``;
so do fewer images than values that fit in one chunk, through their Gram matrix
(images x images), which is then the smaller problem.
Larger images (a 128x128 colour picture has 49,152 values, a covariance of 19 GB)
get Halko, Martinsson and Tropp's randomized subspace iteration, run as passes
over the images in chunks: each pass forms ``C Q = sum Xc^T (Xc Q)`` over the
chunks of centred images for an orthonormal pixels x k basis ``Q``, which is
re-orthonormalised (QR) for the next pass, and a Rayleigh-Ritz step on
``Q^T C Q`` (the same pass's by-product) gives the directions.  Passes repeat
until the variance the top d directions capture stops moving by more than a
small share of what they leave out, which is the training SSE.  Nothing holds
all images: a folder's uint8 memory map is read a chunk at a time (``Rows``),
so memory is bounded by :func:`pca_memory_bytes`, whatever the number of images.

The data are centred explicitly in each chunk against a mean from a first pass,
since the implicit formula ``X^T X - N mu mu^T`` loses digits to a large mean;
products of a chunk run in float32 above the exact limit (their rounding is far
below what the stopping rule tolerates) and every sum over chunks, the QR and the
small eigenproblem run in float64.
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence

import numpy as np

from ..bundle_format import DiagonalGaussianParams
from ..density import VAR_FLOOR
from ..errors import AetoolError, UsageError
from ..memory import fits, gigabytes
from ..metrics import psnr_from_sse
from ..progress import progress
from ..datasets import TrainingData

if TYPE_CHECKING:  # the registry (families.py) calls this module's fits: it imports nothing that imports it
    from .config import TrainConfig
    from .run import RunFolder


class ImageRows(Protocol):
    """What the streaming fit reads: ``len`` and slices of (n, C, H, W) or (n, pixels) images, uint8
    (a folder's cache, divided by 255) or floats in [0, 1].  A numpy array and ``Rows`` both are."""

    def __len__(self) -> int: ...

    def __getitem__(self, key: slice) -> np.ndarray: ...


EXACT_MAX_PIXELS = 4096  # the covariance is pixels x pixels: 128 MB at 4096 values and seconds to decompose
CHUNK_BYTES = 64 << 20  # float32 bytes of one chunk of images
OVERSAMPLE = 10  # extra directions of the subspace beyond d (Halko et al.'s p), at least
MAX_PASSES = 12  # subspace iterations at most; images' slowly falling spectra converge in a few
TOLERANCE = 1e-3  # stop when the captured variance moves by less than this share of the residual


def fit_pca(images: np.ndarray, d: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and top-d principal directions (pixels, d) of images held in memory, in float64 for a
    faithful optimum: the reference the streaming fit is checked against."""
    x = images.reshape(len(images), -1).astype(np.float64)
    mean = x.mean(axis=0)
    xc = x - mean
    cov = xc.T @ xc / len(x)
    eigvals, eigvecs = np.linalg.eigh(cov)
    order = np.argsort(eigvals)[::-1][:d]
    return mean, _fix_signs(eigvecs[:, order])


def _fix_signs(components: np.ndarray) -> np.ndarray:
    """A deterministic sign per direction (its largest entry positive), so two fits on the same data agree."""
    d = components.shape[1]
    sign = np.sign(components[np.abs(components).argmax(axis=0), np.arange(d)])
    return components * np.where(sign == 0, 1.0, sign)


def reconstruct_numpy(images: np.ndarray, mean: np.ndarray, components: np.ndarray) -> np.ndarray:
    x = images.reshape(len(images), -1).astype(np.float64)
    return ((x - mean) @ components @ components.T + mean).reshape(images.shape)


# ---------------------------------------------------------------- the streaming fit
def subspace_size(d: int, pixels: int, images: int) -> int:
    """k: d plus the oversampling that makes the top d directions converge in a few passes."""
    return int(min(d + max(OVERSAMPLE, d // 4), pixels, max(images, d)))


def chunk_rows(pixels: int, chunk_bytes: int = CHUNK_BYTES) -> int:
    return max(1, chunk_bytes // (4 * pixels))


def pca_memory_bytes(pixels: int, d: int, *, images: int | None = None, chunk_bytes: int = CHUNK_BYTES,
                     exact_max_pixels: int = EXACT_MAX_PIXELS) -> int:
    """An upper estimate in bytes of the arrays the fit holds at once (not the interpreter and its
    libraries), independent of the number of images: a chunk as read (uint8), as floats and as float64, then
    either five pixels x pixels float64 arrays (the covariance, a chunk's product, ``eigh``'s copy,
    vectors and workspace) or the k-column bases (at most four float64 at once: the pass's sum, Q, and
    the orthonormalisation's two; two float32: Q and a chunk's share) and three float64 copies of the
    d directions as they are rotated and signed."""
    m = chunk_rows(pixels, chunk_bytes)
    exact = pixels <= exact_max_pixels
    chunk = m * pixels * (1 + 4 + 8)  # as read, as floats, and in float64 (the exact paths)
    if exact:
        return chunk + 5 * 8 * pixels * pixels
    k = subspace_size(d, pixels, images if images is not None else pixels)
    return chunk + pixels * k * (4 * 8 + 2 * 4) + pixels * d * 3 * 8 + m * k * 4


def pca_method(pixels: int, d: int, images: int, *, chunk_bytes: int = CHUNK_BYTES,
               exact_max_pixels: int = EXACT_MAX_PIXELS) -> str:
    """"exact" where the closed form is cheap (small images, or few images in one chunk), else "randomized"."""
    gram = images <= chunk_rows(pixels, chunk_bytes) and d < images - 1
    return "exact" if gram or pixels <= exact_max_pixels else "randomized"


@dataclasses.dataclass
class PCAFit:
    """The fitted mean (pixels,) and directions (pixels, d), and how the fit went."""

    mean: np.ndarray
    components: np.ndarray
    method: str  # "exact" (covariance and eigh) or "randomized" (subspace iteration)
    passes: int  # passes over the images, the mean's included
    variances: np.ndarray  # variance along each direction on the training images (population)
    total_variance: float  # summed over all pixels: the training SSE per image of d = 0
    memory_bytes: int  # pca_memory_bytes of this fit
    subspace: int | None = None  # k, for the randomized fit

    def info(self) -> dict[str, Any]:
        return {"method": self.method, "passes": self.passes, "subspace": self.subspace,
                "memory_bound_bytes": self.memory_bytes,
                "captured_variance_share": float(self.variances.sum() / self.total_variance) if self.total_variance else 1.0}


def _orthonormal(z: np.ndarray) -> np.ndarray:
    """An orthonormal basis of the columns of a tall ``z``, as CholeskyQR2 finds it (here with the Gram
    matrix's eigenvectors): two small Gram products instead of Householder QR, which on a tall, narrow
    matrix is memory-bound and took most of a pass.  Where ``z`` is too ill-conditioned for the Gram
    matrix (or has dependent columns: fewer images than k), Householder QR."""
    for _ in range(2):
        s, v = np.linalg.eigh(z.T @ z)
        if not s[0] > 1e-12 * s[-1]:
            return np.linalg.qr(z)[0]
        z = z @ (v / np.sqrt(s))
        if s[0] > 1e-8 * s[-1]:  # condition below 1e4: orthogonal to about 1e-8 already
            break
    return z


def _chunks(n: int, m: int) -> list[tuple[int, int]]:
    return [(i, min(i + m, n)) for i in range(0, n, m)]


def _read(rows: ImageRows, start: int, stop: int, pixels: int, out: np.ndarray) -> np.ndarray:
    """Rows start..stop as floats in [0, 1] into ``out`` (never a view of ``rows``: it is centred in place)."""
    x = np.asarray(rows[start:stop]).reshape(stop - start, pixels)
    view = out[: stop - start]
    if x.dtype == np.uint8:
        np.divide(x, np.float32(255), out=view, dtype=out.dtype, casting="unsafe")
        if out.dtype != np.float32:  # as_float's float32 values, whatever precision computes with them
            view[...] = view.astype(np.float32)
    else:
        view[...] = x.astype(np.float32) if out.dtype != np.float32 else x
    return view


def _mean(rows: ImageRows, pixels: int, m: int, buf: np.ndarray, bar: Callable) -> np.ndarray:
    total = np.zeros(pixels, dtype=np.float64)
    for start, stop in bar(_chunks(len(rows), m), "PCA mean"):
        total += _read(rows, start, stop, pixels, buf).sum(axis=0, dtype=np.float64)
    return total / len(rows)


def fit_pca_streaming(rows: ImageRows, d: int, *, seed: int = 0, exact_max_pixels: int = EXACT_MAX_PIXELS,
                      chunk_bytes: int = CHUNK_BYTES, max_passes: int = MAX_PASSES, tolerance: float = TOLERANCE,
                      quiet: bool = True) -> PCAFit:
    """PCA of ``rows`` (see :class:`ImageRows`) read a chunk at a time: the exact closed form up to
    ``exact_max_pixels`` values an image, randomized subspace iteration above (see the module's note).

    ``fit.mean`` and ``fit.components`` are float64; the components' columns are orthonormal, in
    decreasing order of variance, each with its largest entry positive, and the same for the same
    ``rows`` and ``seed``.  Memory stays within :func:`pca_memory_bytes` for any number of images.
    """
    n = len(rows)
    if n < 1:
        raise UsageError("PCA needs at least one training image")
    first = np.asarray(rows[0:1])
    pixels = int(np.prod(first.shape[1:]))
    if not 1 <= d <= pixels:
        raise UsageError(f"--d {d}: PCA has at most {pixels} directions")
    exact = pixels <= exact_max_pixels
    m = min(n, chunk_rows(pixels, chunk_bytes))
    dtype = np.float64 if exact else np.float32
    buf = np.empty((m, pixels), dtype=dtype)
    memory = pca_memory_bytes(pixels, d, images=n, chunk_bytes=chunk_bytes, exact_max_pixels=exact_max_pixels)

    def bar(chunks: Sequence[tuple[int, int]], desc: str):
        return progress(chunks, quiet=quiet, desc=desc, total=len(chunks))

    mean = _mean(rows, pixels, m, buf, bar)
    centre = mean.astype(dtype)
    chunks = _chunks(n, m)
    if n <= m and d < n - 1:  # fewer images than values, all in one chunk: the images' Gram matrix, n x n
        xc = _read(rows, 0, n, pixels, buf).astype(np.float64)
        xc -= mean
        eigvals, u = np.linalg.eigh(xc @ xc.T)
        order = np.argsort(eigvals)[::-1][:d]
        s = np.sqrt(np.maximum(eigvals[order], 1e-300))
        components = _orthonormal(xc.T @ (u[:, order] / s))
        components = components @ np.linalg.eigh(components.T @ (xc.T @ (xc @ components)))[1][:, ::-1]
        return PCAFit(mean, _fix_signs(components), "exact", 2, eigvals[order].clip(0) / n,
                      float(np.einsum("ij,ij->", xc, xc) / n), memory)
    if exact:
        cov = np.zeros((pixels, pixels), dtype=np.float64)
        for start, stop in bar(chunks, "PCA covariance"):
            xc = _read(rows, start, stop, pixels, buf)
            xc -= centre
            cov += xc.T @ xc
        cov /= n
        eigvals, eigvecs = np.linalg.eigh(cov)
        order = np.argsort(eigvals)[::-1][:d]
        return PCAFit(mean, _fix_signs(eigvecs[:, order]), "exact", 2, np.maximum(eigvals[order], 0.0),
                      float(np.trace(cov)), memory)

    k = subspace_size(d, pixels, n)
    rng = np.random.default_rng(seed)
    q = _orthonormal(rng.standard_normal((pixels, k)))
    z = np.empty((pixels, k), dtype=np.float64)
    share = np.empty((pixels, k), dtype=np.float32)
    total = 0.0
    captured_before = None
    passes = 1
    while True:
        passes += 1
        q32 = q.astype(np.float32)
        z[...] = 0.0
        total_pass = 0.0
        for start, stop in bar(chunks, f"PCA pass {passes - 1}"):
            xc = _read(rows, start, stop, pixels, buf)
            xc -= centre
            if passes == 2:
                total_pass += float(np.einsum("ij,ij->", xc, xc, dtype=np.float64))
            y = xc @ q32
            np.matmul(xc.T, y, out=share)
            z += share
        if passes == 2:
            total = total_pass
        # Rayleigh-Ritz on span(q): q^T C q, with C q just summed
        t = q.T @ z
        ritz, w = np.linalg.eigh((t + t.T) / 2)
        order = np.argsort(ritz)[::-1]
        ritz, w = ritz[order], w[:, order]
        captured = float(ritz[:d].sum())
        residual = max(total - captured, 0.0)
        converged = captured_before is not None and captured - captured_before <= tolerance * residual + 1e-12 * total
        if converged or passes - 1 >= max_passes:
            components = q @ w[:, :d]
            break
        captured_before = captured
        q = None  # freed before the new basis is made
        q = _orthonormal(z)
    return PCAFit(mean, _fix_signs(components), "randomized", passes, np.maximum(ritz[:d], 0.0) / n, total / n,
                  memory, subspace=k)


def project_stats(rows: ImageRows, mean: np.ndarray, components: np.ndarray, *, chunk_bytes: int = CHUNK_BYTES,
                  quiet: bool = True, desc: str = "PCA errors") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each image's SSE through the projection, and the latents' mean and (population) variance, a chunk
    at a time: what training reports and the diagonal Gaussian needs, without holding the images."""
    n, (pixels, d) = len(rows), components.shape
    exact = pixels <= EXACT_MAX_PIXELS
    dtype = np.float64 if exact else np.float32
    m = min(max(n, 1), chunk_rows(pixels, chunk_bytes))
    buf = np.empty((m, pixels), dtype=dtype)
    w, centre = components.astype(dtype), mean.astype(dtype)
    sse = np.empty(n, dtype=np.float64)
    z_sum, z_sq = np.zeros(d), np.zeros(d)
    chunks = _chunks(n, m)
    for start, stop in progress(chunks, quiet=quiet, desc=desc, total=len(chunks)):
        xc = _read(rows, start, stop, pixels, buf)
        xc -= centre
        z = xc @ w
        xc -= z @ w.T  # the residual
        sse[start:stop] = np.einsum("ij,ij->i", xc, xc, dtype=np.float64)
        z64 = z.astype(np.float64)
        z_sum += z64.sum(axis=0)
        z_sq += (z64 ** 2).sum(axis=0)
    z_mean = z_sum / max(n, 1)
    return sse, z_mean, np.maximum(z_sq / max(n, 1) - z_mean ** 2, 0.0)


# ---------------------------------------------------------------- the run
def train_pca(config: TrainConfig, run: "RunFolder", data: TrainingData, *, log: Callable[[str], None] = print,
              quiet: bool = True) -> dict:
    from .model import PCAAutoEncoder

    pixels = data.image.pixels
    if config.d > pixels:
        raise UsageError(f"--d {config.d}: PCA has at most {pixels} directions")
    bound = pca_memory_bytes(pixels, config.d, images=len(data.train))
    ok, available = fits(bound)
    if not ok:
        raise AetoolError(f"--d {config.d}: PCA of {len(data.train)} images of {pixels} values needs up to "
                          f"{gigabytes(bound)}, and this machine has {gigabytes(available)} free; lower --d "
                          f"({len(data.train)} training images give at most {len(data.train)} useful directions) "
                          f"or --image-size")
    log(f"PCA d={config.d} on {len(data.train)} images of {pixels} values: "
        f"{pca_method(pixels, config.d, len(data.train))} fit, its arrays within {gigabytes(bound)}")
    t0 = time.perf_counter()
    fit = fit_pca_streaming(data.train, config.d, seed=config.seed, quiet=quiet)
    seconds = time.perf_counter() - t0
    mean, components = fit.mean, fit.components
    sse, _, _ = project_stats(data.heldout, mean, components, quiet=quiet, desc=f"PCA {data.heldout_name}")
    train_sse, z_mean, z_var = project_stats(data.train, mean, components, quiet=quiet, desc="PCA training errors")
    model = PCAAutoEncoder(config.d, data.image.shape).set_basis(mean, components)
    history = [{
        "epoch": 1,
        "train_loss": float(0.5 * train_sse.mean()),
        "test_sse_per_image": float(sse.mean()),
        "test_psnr_db": psnr_from_sse(float(sse.mean()), pixels),
        "seconds": seconds,
    }]
    metrics = _save_fit(run, config, model, history, DiagonalGaussianParams(z_mean, np.maximum(z_var, VAR_FLOOR)),
                        {"parameters": {"encoder": pixels * config.d + config.d, "decoder": pixels * config.d + pixels},
                         "data": data.info, "fit": fit.info()})
    log(f"PCA d={config.d} ({fit.method}, {fit.passes} passes) on {len(data.train)} images: {data.heldout_name} "
        f"SSE/image {history[0]['test_sse_per_image']:.3f}  PSNR {history[0]['test_psnr_db']:.2f} dB "
        f"({seconds:.1f} s) -> {run}")
    return metrics


def train_block_pca(config: TrainConfig, run: "RunFolder", data: TrainingData, *, log: Callable[[str], None] = print,
                    quiet: bool = True) -> dict:
    """PCA of the f x f x C blocks of a folder's pictures at their own size (``--arch pca --factor f``):
    the map families' linear baseline, exact (the blocks' covariance is at most 768 square)."""
    from .crops import map_codes, picture_errors
    from .maps import BlockPCA, fit_block_pca

    f, channels = config.factor, data.image.channels
    values = f * f * channels
    if config.d > values:
        raise UsageError(f"--d {config.d}: a {f}x{f}x{channels} block has {values} values, so PCA has at most "
                         f"{values} directions")
    log(f"block PCA d={config.d} of {f}x{f}x{channels} blocks on {len(data.train)} pictures "
        f"({data.info['train_megapixels']:.1f} megapixels)")
    t0 = time.perf_counter()
    mean, components, info = fit_block_pca(progress(data.train, quiet=quiet, desc="block PCA", unit="picture"), f, config.d)
    seconds = time.perf_counter() - t0
    model = BlockPCA(config.d, channels, f).start_at_pca(mean, components)
    errors = picture_errors(model, data.heldout, f, "cpu")
    codes = map_codes(model.encoder, data.train, f, "cpu")
    history = [{"epoch": 1, "test_sse_per_image": float(errors.sse.mean()), "test_sse_per_pixel": errors.sse_per_pixel,
                "test_psnr_db": errors.psnr_db, "test_ssim": float(errors.ssim.mean()), "seconds": seconds}]
    density = DiagonalGaussianParams(codes.mean(0), np.maximum(codes.var(0), VAR_FLOOR))
    metrics = _save_fit(run, config, model, history, density,
                        {"parameters": {"encoder": values * config.d + config.d, "decoder": values * config.d + values},
                         "data": data.info, "fit": {"method": "exact (block covariance)", **info},
                         **{k: history[0][k] for k in ("test_sse_per_pixel", "test_ssim")}})
    log(f"block PCA d={config.d} per {f}x{f} block ({info['explained_variance']:.1%} of the blocks' variance): "
        f"{data.heldout_name} SSE/pixel {errors.sse_per_pixel:.5f}  PSNR {errors.psnr_db:.2f} dB  "
        f"SSIM {history[0]['test_ssim']:.4f} ({seconds:.1f} s) -> {run}")
    return metrics


def _save_fit(run: "RunFolder", config: TrainConfig, model: Any, history: list[dict], density: DiagonalGaussianParams,
              extra: dict[str, Any]) -> dict:
    """A closed-form fit's run folder: its checkpoint (one "epoch"), density and metrics."""
    run.forget_density()  # an old run's density, if this replaces one (--force)
    run.save_checkpoint({"arch": config.arch().to_dict(), "config": dataclasses.asdict(config), "epoch": 1,
                         "model": model.state_dict(), "history": history})
    run.write_density(density.to_dict())
    metrics = {"family": "pca", "arch": config.arch().to_dict(), "config": dataclasses.asdict(config), **extra,
               "epochs_done": 1, "started_from": [], "epochs_in_all": 1, "complete": True,
               "test_sse_per_image": history[0]["test_sse_per_image"], "test_psnr_db": history[0]["test_psnr_db"],
               "history": history}
    run.write_metrics(metrics)
    return metrics
