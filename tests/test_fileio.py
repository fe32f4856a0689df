"""JSON files the project writes: compact number lists, exact round trip; where aetool's cache is."""

from __future__ import annotations

import json

from aetool.fileio import default_cache_dir, read_json, write_json


def test_json_keeps_number_lists_on_one_line_and_round_trips_exactly(tmp_path):
    obj = {"covs": [[[1.0, 0.1 + 0.2], [-3e-07, 4.0]]], "note": "kept [1,  2] as written\nin a string",
           "flags": [True, None], "rows": [{"x": 1}], "empty": []}
    path = tmp_path / "x.json"
    write_json(path, obj)
    text = path.read_text()
    assert "[1.0, 0.30000000000000004]" in text and "[-3e-07, 4.0]" in text
    assert read_json(path) == obj == json.loads(text)


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("AETOOL_CACHE", str(tmp_path / "a"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert default_cache_dir() == tmp_path / "a"
    monkeypatch.delenv("AETOOL_CACHE")
    assert default_cache_dir() == tmp_path / "x" / "aetool"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "h"))
    assert default_cache_dir() == tmp_path / "h" / ".cache" / "aetool"
