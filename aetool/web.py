"""``aetool web``: a static page that runs a bundle in the browser with onnxruntime-web.

The page needs no server code and no build step: ``index.html``, ``app.js`` and
``style.css`` (shipped in ``aetool/webapp/``), each chosen bundle's three files
copied byte for byte (so the page reads the very ``latent.json`` the runtime
reads, densities and anomaly calibration included), a small ``map.json`` per
bundle (the points of the latent map, computed here with onnxruntime), and the
onnxruntime-web runtime.  Any static server serves it; it works offline.

The runtime (about 14 MB of WebAssembly) is not in the Python package: it comes
from ``--runtime DIR``, else from the cache ``scripts/install.sh`` fills
(``<cache>/onnxruntime-web-1.30.0/``), else from npm (``npm pack``, once, into
that cache; every file's SHA-256 checked), else the page can load it from a URL
(``--runtime-url``, for users online).  Only the three files the page uses are
copied: the WebAssembly-only build ``ort.wasm.min.js``, its loader and its wasm.

Nothing here imports torch: building a site is a runtime command.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.resources
import itertools
import os
import shutil
import tarfile
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .bundle import Bundle, load_bundle
from .bundle_format import DECODER, ENCODER, LATENT, DiagonalGaussianParams
from .errors import AetoolError, UsageError
from .fileio import atomic_dir, check_replaceable_dir, default_cache_dir, read_json, sha256_file, write_json

RUNTIME_VERSION = "1.30.0"
RUNTIME_PACKAGE = "onnxruntime-web"
RUNTIME_SPEC = f"{RUNTIME_PACKAGE}@{RUNTIME_VERSION}"
# the files the page loads, with their SHA-256 in 1.30.0: the wasm-only build (the page needs no
# WebGPU/WebGL), the module that loads the wasm, and the wasm itself
RUNTIME_FILES = {
    "ort.wasm.min.js": "faece07e84faa9001f5104bbe4e5c70861d06cb2376a0dea1fa0ad33a67adc81",
    "ort-wasm-simd-threaded.mjs": "e13f7f94fc51b4ca72b12faeb1ee95f4ace6dfbc8939bc718aabdc0a27c4299b",
    "ort-wasm-simd-threaded.wasm": "3398c10d07d229bd91b364548e130e0e51a8e5704b88c7c083ebbeb78842dee2",
}
APP_FILES = ("index.html", "app.js", "style.css")
SITE_FILE = "site.json"  # marks a folder as an aetool site: `aetool web` may replace it
GENERATOR = "aetool web"
MAP_POINTS = 2000
GALLERY_PER_LABEL = 5
GALLERY_BYTES = 1 << 20  # embedded gallery pictures, uint8, at most this much per bundle
FETCH_TIMEOUT_S = 300.0
RUNTIME_HELP = ("run scripts/install.sh (it fetches onnxruntime-web with npm), pass --runtime DIR "
                "(a folder with ort.wasm.min.js and its wasm, e.g. node_modules/onnxruntime-web/dist), "
                f"or --runtime-url URL of {RUNTIME_SPEC}'s dist/ folder on a CDN for a page that loads it online")


# ---------------------------------------------------------------------------- the runtime files
def runtime_cache_dir() -> Path:
    """Where the runtime files are kept between builds (next to aetool's MNIST cache)."""
    return default_cache_dir() / f"{RUNTIME_PACKAGE}-{RUNTIME_VERSION}"


def _runtime_folder(folder: Path) -> Path | None:
    """``folder`` itself, its ``dist/`` or ``package/dist/`` (an unpacked npm package): the first that
    holds all the runtime files."""
    for candidate in (folder, folder / "dist", folder / "package" / "dist"):
        if all((candidate / name).is_file() for name in RUNTIME_FILES):
            return candidate
    return None


def _cache_is_whole(folder: Path) -> bool:
    return all((folder / name).is_file() and sha256_file(folder / name) == digest for name, digest in RUNTIME_FILES.items())


def install_runtime(tarball: str | os.PathLike, cache: Path | None = None) -> Path:
    """Unpack the runtime files from an npm tarball of onnxruntime-web 1.30.0 (``npm pack``'s
    output) into the cache, each checked against its SHA-256.  scripts/install.sh calls this."""
    cache = runtime_cache_dir() if cache is None else Path(cache)
    try:
        with tarfile.open(tarball, "r:gz") as tar:
            members = {m.name: m for m in tar.getmembers() if m.isfile()}
            with atomic_dir(cache, force=True) as stage:  # aetool's own cache folder
                for name, digest in RUNTIME_FILES.items():
                    member = members.get(f"package/dist/{name}")
                    if member is None:
                        raise AetoolError(f"{tarball}: not an {RUNTIME_PACKAGE} {RUNTIME_VERSION} package (no dist/{name})")
                    data = tar.extractfile(member).read()
                    if hashlib.sha256(data).hexdigest() != digest:
                        raise AetoolError(f"{tarball}: dist/{name} is not {RUNTIME_PACKAGE} {RUNTIME_VERSION}'s (SHA-256 differs)")
                    (stage / name).write_bytes(data)
    except (OSError, tarfile.TarError, EOFError) as e:
        raise AetoolError(f"{tarball}: cannot read the npm package ({' '.join(str(e).split())[:160]})") from None
    return cache


def fetch_runtime(cache: Path | None = None, log: Callable[[str], None] = lambda s: None) -> Path:
    """Fetch onnxruntime-web's package with npm (``npm pack``: about 33 MB, once) and unpack the
    runtime files into the cache, each checked against its SHA-256."""
    npm = shutil.which("npm")
    if npm is None:
        raise AetoolError(f"no onnxruntime-web runtime in {runtime_cache_dir() if cache is None else cache}; {RUNTIME_HELP}")
    log(f"fetching {RUNTIME_SPEC} with npm (33 MB, once) ...")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            subprocess.run([npm, "pack", "--silent", RUNTIME_SPEC], cwd=tmp, check=True, capture_output=True,
                           timeout=FETCH_TIMEOUT_S)
        except (subprocess.SubprocessError, OSError) as e:
            reason = " ".join((getattr(e, "stderr", b"") or b"").decode(errors="replace").split())[:160] or type(e).__name__
            raise AetoolError(f"no onnxruntime-web runtime: npm pack {RUNTIME_SPEC} failed ({reason}); {RUNTIME_HELP}") from None
        tarballs = sorted(Path(tmp).glob("*.tgz"))
        if not tarballs:
            raise AetoolError(f"no onnxruntime-web runtime: npm pack {RUNTIME_SPEC} wrote no package; {RUNTIME_HELP}")
        return install_runtime(tarballs[0], cache)


@dataclass
class Runtime:
    """Where the page gets onnxruntime-web: files copied from ``folder``, or loaded from ``url``."""

    folder: Path | None = None
    url: str | None = None
    source: str = ""


def find_runtime(runtime_dir: Path | None = None, runtime_url: str | None = None, fetch: bool = True,
                 log: Callable[[str], None] = lambda s: None) -> Runtime:
    """--runtime DIR, else --runtime-url, else the cache, else a download into the cache."""
    if runtime_dir is not None and runtime_url is not None:
        raise UsageError("give --runtime DIR or --runtime-url URL, not both")
    if runtime_dir is not None:
        found = _runtime_folder(Path(runtime_dir))
        if found is None:
            raise UsageError(f"--runtime {runtime_dir}: no {', '.join(RUNTIME_FILES)} there (nor in dist/)")
        for name, digest in RUNTIME_FILES.items():  # the same check as the files fetched with npm
            if sha256_file(found / name) != digest:
                raise UsageError(f"--runtime {runtime_dir}: {name} is not {RUNTIME_PACKAGE} {RUNTIME_VERSION}'s "
                                 f"(SHA-256 differs); the page is built for that version's files only")
        return Runtime(folder=found, source=str(found))
    if runtime_url is not None:
        if not runtime_url.startswith(("https://", "http://")) or any(c in runtime_url for c in "\"'<> "):
            raise UsageError(f"--runtime-url must be an http(s) URL of onnxruntime-web's dist/ folder, got {runtime_url!r}")
        return Runtime(url=runtime_url if runtime_url.endswith("/") else runtime_url + "/", source=runtime_url)
    cache = runtime_cache_dir()
    if _cache_is_whole(cache):
        return Runtime(folder=cache, source=str(cache))
    if not fetch:
        raise AetoolError(f"no onnxruntime-web runtime in {cache}; {RUNTIME_HELP}")
    return Runtime(folder=fetch_runtime(cache, log), source=f"npm pack {RUNTIME_SPEC}")


# ---------------------------------------------------------------------------- the map's data
def _labelled_points(bundle: Bundle, n: int) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray | None, str]:
    """(latents, labels, gallery images, gallery labels, what they are) for the map.

    MNIST-digit bundles: the first ``n`` MNIST test digits (a fixed, reproducible sample).  Other
    bundles: nothing (the map then shows no scatter; ``--images`` gives it points)."""
    if bundle.meta.image.preprocessing != "mnist_digit":
        return np.zeros((0, bundle.d)), None, np.zeros((0, *bundle.image_shape), np.float32), None, "none"
    from .mnist import mnist_test_head

    test = mnist_test_head(n)
    z = bundle.encode(test.images).reshape(n, bundle.d)
    picks = np.concatenate([np.flatnonzero(test.labels == k)[:GALLERY_PER_LABEL] for k in range(10)])
    picks.sort()
    return z, test.labels, test.images[picks], test.labels[picks], f"the first {n} MNIST test digits"


def _folder_points(bundle: Bundle, folder: Path, n: int, strict: bool = False,
                   log: Callable[[str], None] = lambda s: None) -> tuple[np.ndarray, np.ndarray, list[str], str]:
    """Latents and pictures of up to ``n`` readable images of ``folder`` (searched recursively), read
    with the bundle's own preprocessing.  A file that cannot be read is skipped and counted, as
    ``aetool encode`` and ``score`` do (``strict``: the error)."""
    from .embed import expand_inputs, readable_pictures
    from .fileio import path_text

    found = expand_inputs([folder])
    if not found:
        raise AetoolError(f"--images {folder}: no pictures found")
    skipped: list[tuple[str, str]] = []
    read = list(itertools.islice(readable_pictures(bundle, found, strict, skipped), max(n, 0)))  # reads no further
    paths, arrays = [p for p, _ in read], [x for _, x in read]
    if skipped:
        log(f"note: --images: skipped {len(skipped)} unreadable file(s), e.g. {skipped[0][0]}: {skipped[0][1]}")
    if not paths:
        raise AetoolError(f"--images {folder}: none of its {len(found)} files could be read "
                          f"(e.g. {skipped[0][0]}: {skipped[0][1]})")
    x = np.stack(arrays)
    z = bundle.encode(x).reshape(len(x), bundle.d)
    return z, x, [path_text(p.name) for p in paths], f"{len(paths)} pictures of {folder.name or folder}"


def _density_moments(bundle: Bundle) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of the default density: a plane for the map where no latents are given."""
    params = bundle.meta.density_params(bundle.meta.default_density)
    if isinstance(params, DiagonalGaussianParams):
        return params.mean, np.diag(params.var)
    w, mu, cov = params.weights, params.means, params.covs
    mean = w @ mu
    centred = mu - mean
    return mean, np.einsum("k,kij->ij", w, cov) + np.einsum("k,ki,kj->ij", w, centred, centred)


def _plane(bundle: Bundle, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
    """(mean, two unit directions, how they were found) of the map's plane in latent space.

    d=2: the latent plane itself (the identity).  Otherwise the top-2 principal directions of the
    shown latents (numpy SVD), or of the density's covariance where there are no latents."""
    d = bundle.d
    if d == 1:
        return np.zeros(1), np.array([[1.0], [0.0]]), "d=1: the latent axis (the map's y is ignored)"
    if d == 2:
        return np.zeros(2), np.eye(2), "d=2: the latent plane itself"
    if len(z) >= 3:
        mean = z.mean(axis=0)
        _, _, vt = np.linalg.svd(z - mean, full_matrices=False)
        axes = vt[:2] * np.where(vt[:2].sum(axis=1, keepdims=True) < 0, -1.0, 1.0)  # a stable sign
        return mean, axes, "the top-2 principal directions of the shown latents (SVD)"
    mean, cov = _density_moments(bundle)
    values, vectors = np.linalg.eigh(cov)
    return mean, vectors[:, ::-1][:, :2].T.copy(), "the top-2 principal directions of the density's covariance"


def _round(a: np.ndarray, digits: int = 5) -> list:
    return np.round(np.asarray(a, dtype=np.float64), digits).tolist()


def map_data(bundle: Bundle, images: Path | None = None, points: int = MAP_POINTS, use_mnist: bool = True,
             strict: bool = False, log: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """What ``map.json`` holds: the plane (mean, axes), the points' 2-D coordinates and labels, and a
    small gallery of pictures (uint8, base64) to pick digits from.  MNIST-digit bundles show MNIST
    test digits; other bundles the pictures of ``images``, or no points."""
    if not use_mnist:
        z, labels, gallery, gallery_labels, what = np.zeros((0, bundle.d)), None, np.zeros((0, *bundle.image_shape)), None, "none"
        names = []
    elif images is not None:
        z, gallery, names, what = _folder_points(bundle, images, points, strict, log)
        labels = gallery_labels = None
    else:  # MNIST digits for digit bundles, nothing for the others
        z, labels, gallery, gallery_labels, what = _labelled_points(bundle, points)
        names = [f"test digit {int(k)}" for k in gallery_labels] if gallery_labels is not None else []
    mean, axes, how = _plane(bundle, z)
    coords = (z - mean) @ axes.T if len(z) else np.zeros((0, 2))
    per_image = int(np.prod(bundle.image_shape))
    keep = max(1, min(len(gallery), GALLERY_BYTES // per_image)) if len(gallery) else 0
    low, high = bundle.meta.image.range
    pixels = np.clip(np.round((np.asarray(gallery[:keep], np.float64) - low) / (high - low) * 255), 0, 255).astype(np.uint8)
    return {
        "source": what,
        "plane": {"mean": _round(mean, 6), "axes": _round(axes, 6), "how": how},
        "points": _round(coords, 4),
        "labels": None if labels is None else [int(k) for k in labels],
        "gallery": {"n": keep, "shape": list(bundle.image_shape), "pixels_uint8_base64": base64.b64encode(pixels.tobytes()).decode(),
                    "labels": None if gallery_labels is None else [int(k) for k in gallery_labels[:keep]],
                    "names": names[:keep]},
    }


# ---------------------------------------------------------------------------- the site
def app_folder() -> Path:
    """The page's own files, shipped in the package."""
    return Path(str(importlib.resources.files("aetool") / "webapp"))


def check_site_target(out: Path, force: bool) -> bool:
    """May ``out`` be written?  Yes when missing, empty, a previous aetool site, or with --force.
    Returns whether something is replaced."""
    check_replaceable_dir(out, force=True, what="-o")  # not the current folder, nor a file
    if not out.exists():
        return False
    if not any(out.iterdir()):
        return False
    site = out / SITE_FILE
    previous = False
    if site.is_file():
        try:
            previous = read_json(site).get("generator") == GENERATOR
        except (AetoolError, AttributeError):
            previous = False
    if not previous and not force:
        raise AetoolError(f"{out} is a folder that is not an aetool site; choose another -o, or --force to replace it")
    return True


def _check_bundle(bundle: Bundle) -> None:
    if bundle.meta.precision != "fp32":
        raise UsageError(f"--bundle {bundle.name}: its graphs are {bundle.meta.precision}, which onnxruntime-web does not "
                         f"match; use the fp32 bundle ({(bundle.meta.variant or {}).get('source', 'its source')})")


def build_site(bundle_args: Sequence[str], out: Path, runtime: Runtime, images: Path | None = None,
               points: int = MAP_POINTS, force: bool = False, log: Callable[[str], None] = lambda s: None,
               note: Callable[[str], None] | None = None, strict: bool = False) -> dict[str, Any]:
    """Write the site into ``out`` atomically (staged beside it, then swapped in) and return its report."""
    out = Path(out)
    replaced = check_site_target(out, force)
    if images is not None and not Path(images).is_dir():
        raise UsageError(f"--images {images}: not a folder")
    bundles = [load_bundle(arg, device="cpu", note=note) for arg in (bundle_args or [None])]
    names: list[str] = []
    for b in bundles:
        _check_bundle(b)
        name = b.name if b.name not in names else f"{b.name}-{len(names)}"
        names.append(name)
    if images is not None and all(b.meta.image.preprocessing == "mnist_digit" for b in bundles):
        log("note: --images is for bundles not trained on MNIST digits; the digit bundles' maps show MNIST test digits")
    entries = []
    with atomic_dir(out, force=True) as stage:  # checked above: empty, a previous site, or --force
        for name in APP_FILES:
            shutil.copyfile(app_folder() / name, stage / name)
        if runtime.folder is not None:
            (stage / "ort").mkdir()
            for name in RUNTIME_FILES:
                shutil.copyfile(runtime.folder / name, stage / "ort" / name)
        for name, b in zip(names, bundles):
            log(f"{name}: map of latents ...")
            folder = stage / "bundles" / name
            folder.mkdir(parents=True)
            for file in (ENCODER, DECODER, LATENT):
                shutil.copyfile(b.path / file, folder / file)
            digits = b.meta.image.preprocessing == "mnist_digit"
            if b.is_map:  # a map has no one code per picture to place on a plane: the page hides the map
                if images is not None:
                    log(f"note: {name} is a map bundle: --images gives it no points (its page reconstructs pictures)")
                data = map_data(b, None, points, use_mnist=False)
                write_json(folder / "map.json", data)
                entries.append({"name": name, "path": f"bundles/{name}/", "source": str(b.path), "family": b.family,
                                "d": b.d, "image": list(b.image_shape), "preprocessing": b.meta.image.preprocessing,
                                "latent": b.meta.latent.to_dict(),
                                "anomaly": b.meta.anomaly is not None and b.meta.anomaly.threshold is not None,
                                "map": data["source"], "points": 0})
                continue
            try:
                data = map_data(b, None if digits else images, points, strict=strict, log=note or log)
            except AetoolError as e:
                if not digits:
                    raise
                log(f"note: {name}: no MNIST test digits for the map ({e}); the map shows no points")
                data = map_data(b, None, points, use_mnist=False)
            write_json(folder / "map.json", data)
            entries.append({"name": name, "path": f"bundles/{name}/", "source": str(b.path), "family": b.family, "d": b.d,
                            "image": list(b.image_shape), "preprocessing": b.meta.image.preprocessing,
                            "anomaly": b.meta.anomaly is not None and b.meta.anomaly.threshold is not None,
                            "map": data["source"], "points": len(data["points"])})
        site = {"generator": GENERATOR, "runtime": {"package": RUNTIME_PACKAGE, "version": RUNTIME_VERSION,
                                                     "url": "ort/" if runtime.folder is not None else runtime.url},
                "bundles": entries}
        write_json(stage / SITE_FILE, site)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    return {"output": str(out), "bundles": entries, "runtime": runtime.source, "runtime_copied": runtime.folder is not None,
            "bytes": size, "replaced": replaced}
