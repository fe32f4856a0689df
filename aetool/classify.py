"""The shipped digit classifier, on onnxruntime: identity kept as a number."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .bundle import shipped_root
from .errors import AetoolError
from .runtime import make_session

CLASSIFIER_FILE = "digit-classifier.onnx"


def classifier_path(path: str | os.PathLike | None = None) -> Path:
    """``path``, else ./models/digit-classifier/classifier.onnx, else the shipped one."""
    candidates = [Path(path)] if path else [Path("models") / "digit-classifier" / "classifier.onnx", shipped_root() / CLASSIFIER_FILE]
    for p in candidates:
        if p.is_file():
            return p
    raise AetoolError(f"digit classifier not found ({candidates[0]}); train it with `aetool train-classifier`")


class DigitClassifier:
    def __init__(self, path: str | os.PathLike | None = None, device: str = "auto") -> None:
        self.path = classifier_path(path)
        self.session, self.provider = make_session(self.path, device)

    def probabilities(self, images: np.ndarray, batch: int = 1000) -> np.ndarray:
        """Softmax over the ten digits, (N, 10); model outputs are clipped to [0, 1] first."""
        x = np.clip(np.asarray(images, dtype=np.float32), 0.0, 1.0)
        logits = [self.session.run(None, {"image": x[i : i + batch]})[0] for i in range(0, len(x), batch)]
        if not logits:
            return np.zeros((0, 10), np.float32)
        z = np.concatenate(logits)
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, images: np.ndarray, batch: int = 1000) -> np.ndarray:
        """Digit labels of (N, 1, 28, 28) images."""
        return self.probabilities(images, batch).argmax(axis=1)


def confidently_read(classifier: DigitClassifier, images: np.ndarray, threshold: float = 0.9) -> np.ndarray:
    """Per image: does the classifier read it as some digit with at least ``threshold`` probability?

    For generated digits there is no true label; a sample that reads as no
    digit in particular is the lecture's "too simple density" failure.
    """
    return classifier.probabilities(images).max(axis=1) >= threshold


def identity_kept(classifier: DigitClassifier, reconstructions: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per image: does the classifier read the reconstruction as the true digit?"""
    return classifier.predict(reconstructions) == np.asarray(labels)
