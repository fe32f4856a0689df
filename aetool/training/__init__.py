"""The training stage: the only part of aetool that imports torch."""
