"""aetool: the EE-559 convolutional autoencoder as a tool.

Train in PyTorch (``aetool.training``), ship ONNX bundles, and run them with
onnxruntime alone::

    import aetool
    b = aetool.load_bundle()          # newest ./export bundle, else the shipped one
    z = b.encode(x)                   # x: (N, 1, 28, 28) float32 in [0, 1]
    x_hat = b.decode(z)
"""

from .errors import AetoolError

__version__ = "0.1.0"

__all__ = ["AetoolError", "load_bundle", "__version__"]


def __getattr__(name):  # lazy: importing aetool must stay cheap and torch-free
    if name == "load_bundle":
        from .bundle import load_bundle

        return load_bundle
    raise AttributeError(name)
