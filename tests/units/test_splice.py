"""Byte templates: holes re-encoded, the rest kept, block sizes dropped, bad specs refused."""

from __future__ import annotations

import io
import json
from typing import Any

import fastavro
import pytest

from skyledger.units.packets.binary import encode_long
from skyledger.units.packets.splice import Spec, compile_plan

ITEM = {
    "type": "record",
    "name": "x",
    "fields": [
        {"name": "k", "type": "long"},
        {"name": "v", "type": ["double", "null"]},
        {"name": "s", "type": "string"},
    ],
}
HEAD = [{"name": "id", "type": ["null", "long"]}, {"name": "name", "type": "string"}]
SCHEMA = {
    "type": "record",
    "name": "t",
    "fields": [
        *HEAD,
        {"name": "xs", "type": {"type": "array", "items": ITEM}},
        {"name": "blob", "type": ["null", "bytes"]},
    ],
}
SPEC = Spec(
    holes=frozenset({"id", "name"}),
    nulls=frozenset({"blob"}),
    children={"xs": Spec(holes=frozenset({"k", "v"}))},
)
ITEMS = [{"k": 1, "v": 1.5, "s": "p"}, {"k": -2, "v": None, "s": "q"}]


def _encode(schema: Any, value: Any) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema), value)
    return out.getvalue()


def _decode(data: bytes) -> Any:
    return fastavro.schemaless_reader(io.BytesIO(data), fastavro.parse_schema(SCHEMA), None)


def _record(block_sizes: bool) -> bytes:
    """Return the record encoded by hand, its array in one block with or without a size."""
    head = _encode({"type": "record", "name": "h", "fields": HEAD}, {"id": 5, "name": "ab"})
    items = b"".join(_encode(ITEM, item) for item in ITEMS)
    count = encode_long(-2) + encode_long(len(items)) if block_sizes else encode_long(2)
    return head + count + items + encode_long(0) + _encode(["null", "bytes"], b"zz")


def test_template_fills_holes_and_keeps_the_rest() -> None:
    payload = {"id": 5, "name": "ab", "xs": ITEMS, "blob": b"zz"}
    assert _record(block_sizes=False) == _encode(SCHEMA, payload)
    plan = compile_plan(json.dumps(SCHEMA), SPEC)
    new = {"id": None, "name": "é" * 300, "xs": [{"k": 2**62, "v": None}, {"k": 0, "v": -0.5}]}
    for block_sizes in (False, True):
        template = plan.cut(_record(block_sizes))
        assert _decode(template.fill(new)) == {
            "id": None,
            "name": "é" * 300,
            "xs": [{"k": 2**62, "v": None, "s": "p"}, {"k": 0, "v": -0.5, "s": "q"}],
            "blob": None,
        }
    with pytest.raises(ValueError, match="field name cannot be null"):
        template.fill({**new, "name": None})
    with pytest.raises(ValueError, match="3 bytes after its last field"):
        plan.cut(_record(block_sizes=False) + b"xyz")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (Spec(holes=frozenset({"xs"})), "cannot be a hole"),
        (Spec(nulls=frozenset({"name"})), "cannot be null"),
        (Spec(children={"name": Spec()}), "not a record or an array"),
    ],
)
def test_specs_that_do_not_fit_the_schema_are_refused(spec: Spec, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        compile_plan(json.dumps(SCHEMA), spec)
