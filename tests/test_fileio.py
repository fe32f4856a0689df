"""JSON files the project writes: compact number lists, exact round trip."""

from __future__ import annotations

import json

from aetool.fileio import read_json, write_json


def test_json_keeps_number_lists_on_one_line_and_round_trips_exactly(tmp_path):
    obj = {"covs": [[[1.0, 0.1 + 0.2], [-3e-07, 4.0]]], "note": "kept [1,  2] as written\nin a string",
           "flags": [True, None], "rows": [{"x": 1}], "empty": []}
    path = tmp_path / "x.json"
    write_json(path, obj)
    text = path.read_text()
    assert "[1.0, 0.30000000000000004]" in text and "[-3e-07, 4.0]" in text
    assert read_json(path) == obj == json.loads(text)
