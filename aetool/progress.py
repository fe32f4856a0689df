"""Progress bars that appear on a terminal and stay silent under --quiet or in a pipe."""

from __future__ import annotations

import sys
from typing import Iterable, TypeVar

T = TypeVar("T")


def show_progress(quiet: bool = False) -> bool:
    return not quiet and sys.stderr.isatty()


def progress(iterable: Iterable[T], *, quiet: bool = False, **kwargs) -> Iterable[T]:
    """Wrap ``iterable`` in a tqdm bar on stderr when a person is watching."""
    if not show_progress(quiet):
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, file=sys.stderr, leave=False, dynamic_ncols=True, **kwargs)
