"""A benchmark's raw file says how to reproduce it and how busy the machine was (issue 23)."""

from __future__ import annotations

import json
import os
import re

import pytest

from benchmarks.rawfile import RawFile


def test_the_raw_file_starts_with_command_revision_dates_and_load_before_and_after(tmp_path, monkeypatch) -> None:
    raw_file = RawFile("benchmarks.cluster", ["--quick"])
    loads = iter([(7.0, 6.0, 5.0)])
    monkeypatch.setattr(os, "getloadavg", lambda: next(loads))
    path = raw_file.write(tmp_path / "raw.json", {"rounds": [1, 2]})
    document = json.loads(path.read_text())
    provenance = document.pop("provenance")
    assert document == {"rounds": [1, 2]}
    assert provenance["command"] == "python -m benchmarks.cluster --quick"
    assert re.fullmatch(r"[0-9a-f]{12}(\+dirty)?", provenance["revision"])
    assert provenance["started"] <= provenance["finished"]
    assert len(provenance["load_before"]) == 3
    assert provenance["load_after"] == [7.0, 6.0, 5.0], "the load when the run ended, read at write time"


def test_raw_data_cannot_hide_the_provenance(tmp_path) -> None:
    with pytest.raises(ValueError, match="provenance"):
        RawFile("benchmarks").write(tmp_path / "raw.json", {"provenance": "forged"})
