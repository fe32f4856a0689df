"""Rows of a memory-mapped image cache: read with pread, in any order, equal to indexing the map."""

from __future__ import annotations

import numpy as np

from aetool.datasets import Rows


def test_rows_read_from_the_cache_equal_the_memory_map(tmp_path):
    path = tmp_path / "cache.npy"
    array = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(50, 3, 4, 4))
    array[:] = np.random.default_rng(0).integers(0, 256, array.shape, dtype=np.uint8)
    array.flush()
    del array
    cache = np.load(path, mmap_mode="r")
    index = np.array([3, 4, 5, 9, 1, 2, 40])
    rows = Rows(cache, index)
    assert rows.file is not None and len(rows) == 7 and rows.shape == (7, 3, 4, 4) and rows.nbytes == 7 * 48
    np.testing.assert_array_equal(rows[:], cache[index])
    np.testing.assert_array_equal(rows[2:5], cache[[5, 9, 1]])
    np.testing.assert_array_equal(rows[np.array([6, 0, 6])], cache[[40, 3, 40]])
    np.testing.assert_array_equal(rows[3], cache[9])
    in_memory = Rows(np.asarray(cache), index)  # the same answers without a file behind it
    assert in_memory.file is None
    np.testing.assert_array_equal(in_memory[1:4], rows[1:4])
