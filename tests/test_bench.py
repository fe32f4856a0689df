"""The shared timing loop behind `aetool bench` and benchmarks/run.py."""

import numpy as np

from aetool.bench import OPS, measure


def test_measure_times_every_cell_on_shared_inputs():
    seen: dict[str, list[np.ndarray]] = {"a": [], "b": []}
    calls = {"a": 0, "b": 0}

    def engine(name):
        def make_ops(x):
            seen[name].append(x)

            def call():
                calls[name] += 1
            return {op: call for op in OPS}
        return make_ops

    reported = []
    rows = measure({"a": engine("a"), "b": engine("b")}, (1, 4), (1, 28, 28), min_repeats=5, max_seconds=0.0,
                   quiet=True, on_row=reported.append)
    assert [(r["engine"], r["op"], r["batch"]) for r in rows] == [(e, op, b) for b in (1, 4) for e in "ab" for op in OPS]
    assert reported == rows
    # both engines get the very same images at each batch size
    assert [x.shape for x in seen["a"]] == [(1, 1, 28, 28), (4, 1, 28, 28)]
    for xa, xb in zip(seen["a"], seen["b"]):
        assert xa is xb
    # 3 warm-up + 5 timed calls per op, per batch size
    assert calls == {"a": 2 * 3 * 8, "b": 2 * 3 * 8}
    for r in rows:
        assert r["calls"] == 5 and 0 <= r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"]
