"""Local Gaia tables (units.gaia): the Gaia archive's TAP JSON, ECSV and CSV read alike."""

from __future__ import annotations

import csv
import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest

from skyledger.units.gaia import COLUMNS, GaiaTable, StarCuts

GAIA = Path(__file__).resolve().parents[1] / "data" / "gaia"
JSON = GAIA / "gaia_dr3_cone_ra280_dec-60.json"
ECSV = GAIA / "gaia_dr3_cone_result.ecsv"
CUTS = StarCuts(20, 3, 3, 9, 20, 999)


def _load(path: Path) -> GaiaTable:
    return GaiaTable.load(str(path), hashlib.sha256(path.read_bytes()).hexdigest())


def _rows(table: GaiaTable) -> dict[int, list[float]]:
    cols = [table.columns[c] for c in COLUMNS[1:]]
    return {int(i): [float(c[k]) for c in cols] for k, i in enumerate(table.source_id)}


def test_tap_json_and_ecsv_give_the_same_rows() -> None:
    tap, ecsv = _rows(_load(JSON)), _rows(_load(ECSV))
    assert len(tap) == 50
    assert len(ecsv) == 5
    for source, values in ecsv.items():
        assert values == pytest.approx(tap[source], nan_ok=True)
    assert math.isnan(ecsv[6636090339112400000][COLUMNS.index("pmra") - 1])  # null: NaN


def test_csv_with_the_archive_s_columns(tmp_path: Path) -> None:
    doc = json.loads(JSON.read_text())
    names = [m["name"] for m in doc["metadata"]]
    path = tmp_path / "gaia.csv"
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["# a comment line"])
        writer.writerow(names)
        writer.writerows(["" if v is None else v for v in row] for row in doc["data"])
    read, tap = _rows(_load(path)), _rows(_load(JSON))
    assert read.keys() == tap.keys()
    for source, values in read.items():
        assert values == pytest.approx(tap[source], nan_ok=True)


def test_the_nearest_star_within_the_radius() -> None:
    table = _load(JSON)
    star = table.star(280.005108, -59.997110, CUTS)
    assert star is not None
    assert star.source_id == 6636090339113063296
    assert table.star(280.005108, -59.997110, StarCuts(20, 1e6, 1e6, 9, 20, 999)) is None
    assert table.star(10.0, 10.0, CUTS) is None  # nothing near
    assert np.all(np.diff(table.columns["dec"]) >= 0)  # sorted for the declination band
