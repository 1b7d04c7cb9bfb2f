"""Sources on the real alert data: counts checked against fastavro read directly."""

from __future__ import annotations

import gzip
import io
import tarfile
from collections import Counter
from pathlib import Path
from typing import Any, cast

import fastavro
import pytest
from pydantic import ValidationError

from skyledger.ledger.canonical import digest_bytes
from skyledger.units.alerts import Alert, Unreadable
from skyledger.units.sources import FileSource, iter_packets

ZTF_FOLDERS = {"night": 699, "suspect": 496, "ZTF21abiuvdk": 34, "samples": 124}


def _read(data: bytes) -> list[dict[str, Any]]:
    return [cast(dict[str, Any], record) for record in fastavro.reader(io.BytesIO(data))]


def _raw_records(folder: Path) -> list[dict[str, Any]]:
    """Read every record under ``folder`` with fastavro alone (the independent count)."""
    records: list[dict[str, Any]] = []
    for path in sorted(folder.rglob("*.avro")):
        records.extend(_read(path.read_bytes()))
    return records


def _alerts(items: list[Alert | Unreadable]) -> list[Alert]:
    assert not [item for item in items if isinstance(item, Unreadable)]
    return [item for item in items if isinstance(item, Alert)]


@pytest.mark.parametrize("folder", sorted(ZTF_FOLDERS))
def test_ztf_folder_alerts_per_stock(shared_data: Path, folder: str) -> None:
    root = shared_data / "ztf" / folder
    raw = _raw_records(root)
    alerts = _alerts(list(iter_packets([root])))
    assert len(alerts) == len(raw) == ZTF_FOLDERS[folder]
    assert Counter(a.stock for a in alerts) == Counter(r["objectId"] for r in raw)
    assert sorted(a.alert_id for a in alerts) == sorted(str(r["candidate"]["candid"]) for r in raw)
    assert {a.survey for a in alerts} == {"ztf"}
    for alert in alerts:
        assert alert.digest == digest_bytes(alert.packet)
        assert alert.schema.startswith("ztf-")


def test_ztf_schema_labels(shared_data: Path) -> None:
    alerts = _alerts(list(iter_packets([shared_data / "ztf" / "night"])))
    assert Counter(a.schema for a in alerts) == {"ztf-4.02": 589, "ztf-3.3": 110}


def test_malformed_files_and_the_source_goes_on(shared_data: Path) -> None:
    bad = sorted((shared_data / "ztf" / "malformed").glob("*.avro"))
    good = sorted((shared_data / "ztf" / "ZTF21abiuvdk").glob("*.avro"))[0]
    items = list(iter_packets([bad[0], shared_data / "ztf" / "malformed", good]))
    kinds = [type(item).__name__ for item in items]
    assert kinds == ["Unreadable"] * 6 + ["Alert"]
    for item, path in zip(items, [bad[0], *bad], strict=False):
        assert isinstance(item, Unreadable)
        assert item.locator == f"{path}#0"
        assert "sync marker not found" in item.reason
        assert item.packet == path.read_bytes()


def test_lsst_real_alerts(shared_data: Path) -> None:
    path = shared_data / "lsst" / "real" / "lsst_ftransfer_2026-03-18_part-2-918301.avro"
    raw = _raw_records(path.parent)
    alerts = _alerts(list(iter_packets([path])))
    assert len(alerts) == len(raw) == 7
    solar = [r for r in raw if not r["diaSource"]["diaObjectId"]]
    assert len(solar) == 2
    expected = {
        f"lsst-ss:{r['diaSource']['ssObjectId']}"
        if not r["diaSource"]["diaObjectId"]
        else f"lsst:{r['diaSource']['diaObjectId']}"
        for r in raw
    }
    assert {a.stock for a in alerts} == expected
    assert sum(a.stock.startswith("lsst-ss:") for a in alerts) == 2
    assert [a.alert_id for a in alerts] == [str(r["diaSourceId"]) for r in raw]
    assert {a.survey for a in alerts} == {"lsst"}
    assert {a.schema for a in alerts} == {"lsst.v10_0"}


@pytest.mark.parametrize("version", ["v9_0", "v10_0", "v11_0"])
def test_lsst_fake_alerts(shared_data: Path, version: str) -> None:
    path = shared_data / "lsst" / "schema" / version / "fakeAlert.avro"
    (record,) = _raw_records(path.parent)
    (alert,) = _alerts(list(iter_packets([path])))
    object_id = record["diaSource"]["diaObjectId"] or record["diaObject"]["diaObjectId"]
    assert alert.stock == f"lsst:{object_id}"
    assert alert.schema == f"lsst.{version}"
    assert alert.alert_id == str(record["diaSourceId"])
    assert alert.packet == path.read_bytes()


def test_elasticc_including_gzip(shared_data: Path) -> None:
    folder = shared_data / "elasticc"
    alerts = _alerts(list(iter_packets([folder])))
    expected = []
    for path in sorted(folder.iterdir()):
        data = path.read_bytes()
        if path.suffix == ".gz":
            data = gzip.decompress(data)
        expected += _read(data)
    assert len(alerts) == len(expected) == 4
    assert [a.stock for a in alerts] == [
        f"elasticc:{r['diaObject']['diaObjectId']}" for r in expected
    ]
    assert [a.alert_id for a in alerts] == [str(r["alertId"]) for r in expected]
    assert {a.schema for a in alerts} == {"elasticc.v0_9"}
    gz = folder / "alert_mjd60674.0512_obj747_src1494043.avro.gz"
    assert alerts[-1].packet == gzip.decompress(gz.read_bytes())


@pytest.mark.parametrize("gz", [False, True])
def test_tar_archive_gives_the_same_alerts_as_the_folder(
    shared_data: Path, tmp_path: Path, gz: bool
) -> None:
    root = shared_data / "ztf"
    files = [
        *sorted((root / "ZTF21abiuvdk").glob("*.avro")),
        root / "night" / "ztf_fink_distribute_f25140c8_n106.avro",
    ]
    archive = tmp_path / ("alerts.tar.gz" if gz else "alerts.tar")
    with tarfile.open(archive, "w:gz") if gz else tarfile.open(archive, "w") as tar:
        for path in files:
            tar.add(path, arcname=str(path.relative_to(root)))
        readme = tarfile.TarInfo("README.txt")
        tar.addfile(readme, io.BytesIO(b""))
    from_files = _alerts(list(iter_packets(files)))
    from_tar = _alerts(list(iter_packets([archive])))
    assert len(from_tar) == 34 + 106
    key = [(a.stock, a.alert_id, a.digest, a.schema) for a in from_files]
    assert [(a.stock, a.alert_id, a.digest, a.schema) for a in from_tar] == key
    assert from_tar[0].locator == f"{archive}!{files[0].relative_to(root)}#0"


def test_directory_order_hidden_files_and_missing_paths(tmp_path: Path, shared_data: Path) -> None:
    sample = sorted((shared_data / "ztf" / "ZTF21abiuvdk").glob("*.avro"))
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x.avro").write_bytes(sample[0].read_bytes())
    (tmp_path / "a.avro").write_bytes(sample[1].read_bytes())
    (tmp_path / ".hidden.avro").write_bytes(b"junk")
    (tmp_path / "notes.txt").write_text("not a packet")
    items = list(iter_packets([tmp_path, tmp_path / "nope.avro"]))
    assert [item.locator for item in items] == [
        f"{tmp_path / 'a.avro'}#0",
        f"{tmp_path / 'b' / 'x.avro'}#0",
        str(tmp_path / "nope.avro"),
    ]
    assert isinstance(items[2], Unreadable)
    assert "no such file or directory" in items[2].reason


def _container(schema: dict[str, Any], records: list[dict[str, Any]]) -> bytes:
    out = io.BytesIO()
    fastavro.writer(out, schema, records)
    return out.getvalue()


def test_unknown_schema_names_what_was_seen(tmp_path: Path) -> None:
    schema = {
        "type": "record",
        "name": "weather",
        "fields": [{"name": "station", "type": "string"}, {"name": "temp", "type": "float"}],
    }
    path = tmp_path / "weather.avro"
    path.write_bytes(_container(schema, [{"station": "x", "temp": 1.0}]))
    (item,) = iter_packets([path])
    assert isinstance(item, Unreadable)
    assert "unknown alert schema 'weather'" in item.reason
    assert "[station, temp]" in item.reason


def test_spark_files_with_null_top_level_candid(shared_data: Path, tmp_path: Path) -> None:
    path = shared_data / "ztf" / "night" / "ztf_fink_distribute_02930a7e_n1.avro"
    data = path.read_bytes()
    schema = fastavro.reader(io.BytesIO(data)).writer_schema
    records = _read(data)
    blanked = [{**record, "candid": None} for record in records]
    blanked.append({**records[0], "objectId": None})
    out = tmp_path / "spark.avro"
    out.write_bytes(_container(cast(dict[str, Any], schema), blanked))
    alert, missing = list(iter_packets([out]))
    assert isinstance(alert, Alert)
    assert alert.alert_id == str(records[0]["candidate"]["candid"])
    assert isinstance(missing, Unreadable)
    assert "without an objectId" in missing.reason


def test_file_source(shared_data: Path) -> None:
    folder = str(shared_data / "ztf" / "ZTF21abiuvdk")
    source = FileSource(FileSource.Config(paths=[folder]))
    assert FileSource.version == "1.0"
    assert [a.digest for a in source.packets()] == [a.digest for a in iter_packets([folder])]
    assert FileSource.Config.model_fields["paths"].description
    with pytest.raises(ValidationError):
        FileSource.Config(paths=[folder], recursive=True)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        source.config.paths = []  # type: ignore[misc]
