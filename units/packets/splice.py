"""Encoded Avro records as byte templates, so that copies re-encode only what changed.

Encoding a ZTF alert with fastavro costs about 3 ms (every nullable union of a record
is validated to pick its branch), ten times more than the few ids and times a copy
changes. A :class:`Template` is the original record's bytes cut around the changed
fields ("holes"): :meth:`Template.fill` encodes the holes from a payload and joins them
with the untouched bytes. The result is valid Avro that decodes to that payload; the
untouched parts stay byte for byte as the original writer encoded them (an array block
with a byte size loses the size, which is optional in Avro).

Which fields are holes is a :class:`Spec`: field names per record, and the fields to
descend into. A hole must be a ``long``, ``int``, ``double``, ``float`` or ``string``,
optionally in a union with ``null``; a field in ``Spec.nulls`` is written as null.

The simulator (``runners.simulate``) makes its copies of alerts this way.
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import fastavro
from fastavro.schema import parse_schema

from skyledger.units.packets.binary import encode_long, read_long

__all__ = ["Hole", "Plan", "Spec", "Template", "compile_plan"]

_ENCODERS: dict[str, Callable[[Any], bytes]] = {
    "long": encode_long,
    "int": encode_long,
    "double": struct.Struct("<d").pack,
    "float": struct.Struct("<f").pack,
    "string": lambda text: encode_long(len(raw := text.encode())) + raw,
}
_WIDTHS = {"double": 8, "float": 4}


@dataclass(frozen=True, slots=True)
class Spec:
    """Which fields of a record are holes, written as null, or descended into."""

    holes: frozenset[str] = frozenset()
    nulls: frozenset[str] = frozenset()
    children: Mapping[str, Spec] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Hole:
    """A field re-encoded from the payload: where it is and how it is encoded."""

    path: tuple[str | int, ...]
    kind: str
    value_prefix: bytes
    """Union index of the value's branch (empty when the field is not a union)."""
    null_prefix: bytes | None
    """Union index of the null branch, or None when the field cannot be null."""

    def encode(self, value: Any) -> bytes:
        """Return the Avro encoding of ``value`` for this field."""
        if value is None:
            if self.null_prefix is None:
                msg = f"field {'.'.join(map(str, self.path))} cannot be null"
                raise ValueError(msg)
            return self.null_prefix
        return self.value_prefix + _ENCODERS[self.kind](value)


@dataclass(frozen=True, slots=True)
class Template:
    """An encoded record cut into constant bytes and holes."""

    parts: tuple[bytes | Hole, ...]

    def fill(self, payload: Mapping[str, Any]) -> bytes:
        """Return the record's bytes with every hole encoded from ``payload``."""
        out: list[bytes] = []
        for part in self.parts:
            if isinstance(part, bytes):
                out.append(part)
                continue
            value: Any = payload
            for key in part.path:
                value = value[key]
            out.append(part.encode(value))
        return b"".join(out)


@dataclass(frozen=True, slots=True)
class _Skip:
    schema: Any  # a parsed record of consecutive untouched fields


@dataclass(frozen=True, slots=True)
class _HoleStep:
    name: str
    kind: str
    value_prefix: bytes
    null_prefix: bytes | None


@dataclass(frozen=True, slots=True)
class _NullStep:
    schema: Any  # a parsed record holding the one field, to skip its bytes
    null: bytes


@dataclass(frozen=True, slots=True)
class _Record:
    steps: tuple[_Skip | _HoleStep | _NullStep | _Child, ...]


@dataclass(frozen=True, slots=True)
class _Array:
    items: _Node


@dataclass(frozen=True, slots=True)
class _Union:
    branches: tuple[_Node | None, ...]  # None: the null branch


@dataclass(frozen=True, slots=True)
class _Child:
    name: str
    node: _Node


_Node = _Record | _Array | _Union


@dataclass(frozen=True, slots=True)
class Plan:
    """How to cut records of one writer schema for one :class:`Spec`."""

    root: _Record

    def cut(self, record: bytes) -> Template:
        """Return the template of one encoded record (raises ValueError if it is not one)."""
        parts: list[bytes | Hole] = []
        end = _walk(self.root, record, 0, (), parts, io.BytesIO(record))
        if end != len(record):
            msg = f"record has {len(record) - end} bytes after its last field"
            raise ValueError(msg)
        merged: list[bytes | Hole] = []
        for part in parts:
            if isinstance(part, bytes) and merged and isinstance(merged[-1], bytes):
                merged[-1] += part
            elif part != b"":
                merged.append(part)
        return Template(tuple(merged))


def compile_plan(schema_text: str, spec: Spec) -> Plan:
    """Return the plan for records written with ``schema_text`` (must be a record)."""
    named: dict[str, Any] = {}
    schema = parse_schema(json.loads(schema_text), named_schemas=named)
    node = _compile(schema, spec, named, "(top level)")
    if not isinstance(node, _Record):
        raise ValueError("the writer schema is not a record")
    return Plan(node)


def _compile(schema: Any, spec: Spec, named: dict[str, Any], where: str) -> _Node | None:
    if isinstance(schema, str):
        if schema == "null":
            return None
        schema = named.get(schema, schema)
    if isinstance(schema, list):
        return _Union(tuple(_compile(branch, spec, named, where) for branch in schema))
    kind = schema.get("type") if isinstance(schema, dict) else schema
    if kind == "record":
        return _record(schema, spec, named)
    if kind == "array":
        return _Array(_node(_compile(schema["items"], spec, named, where), where))
    msg = f"cannot descend into field {where} of type {kind!r}: not a record or an array"
    raise ValueError(msg)


def _node(node: _Node | None, where: str) -> _Node:
    if node is None:
        raise ValueError(f"field {where} holds only nulls")
    return node


def _record(schema: dict[str, Any], spec: Spec, named: dict[str, Any]) -> _Record:
    steps: list[_Skip | _HoleStep | _NullStep | _Child] = []
    run: list[dict[str, Any]] = []

    def flush() -> None:
        if run:
            steps.append(_Skip(_run_schema(run, named)))
            run.clear()

    for item in schema["fields"]:
        name, kind = item["name"], item["type"]
        if name in spec.holes:
            flush()
            steps.append(_hole(name, kind))
        elif name in spec.nulls:
            flush()
            steps.append(_NullStep(_run_schema([item], named), _union_index(name, kind, "null")))
        elif name in spec.children:
            flush()
            node = _compile(kind, spec.children[name], named, name)
            steps.append(_Child(name, _node(node, name)))
        else:
            run.append(item)
    flush()
    return _Record(tuple(steps))


def _run_schema(fields: list[dict[str, Any]], named: dict[str, Any]) -> Any:
    record = {"type": "record", "name": "skyledger.splice.run", "fields": list(fields)}
    return parse_schema(record, named_schemas=dict(named))


def _primitive(schema: Any) -> str | None:
    if isinstance(schema, dict) and "logicalType" not in schema:
        schema = schema.get("type")
    return schema if isinstance(schema, str) else None


def _hole(name: str, schema: Any) -> _HoleStep:
    branches = schema if isinstance(schema, list) else [schema]
    kinds = [_primitive(branch) for branch in branches]
    values = [k for k in kinds if k != "null"]
    if len(values) != 1 or values[0] not in _ENCODERS:
        msg = f"field {name!r} of type {schema!r} cannot be a hole: not a primitive or null"
        raise ValueError(msg)
    if not isinstance(schema, list):
        return _HoleStep(name, values[0], b"", None)
    null = encode_long(kinds.index("null")) if "null" in kinds else None
    return _HoleStep(name, values[0], encode_long(kinds.index(values[0])), null)


def _union_index(name: str, schema: Any, kind: str) -> bytes:
    if isinstance(schema, list):
        for index, branch in enumerate(schema):
            if _primitive(branch) == kind:
                return encode_long(index)
    raise ValueError(f"field {name!r} of type {schema!r} cannot be {kind}")


def _walk(
    node: _Node,
    data: bytes,
    pos: int,
    path: tuple[str | int, ...],
    out: list[bytes | Hole],
    stream: io.BytesIO,
) -> int:
    """Append the parts of the value of ``node`` at ``pos``; return the position after it."""
    if isinstance(node, _Union):
        index, end = read_long(data, pos)
        out.append(data[pos:end])
        branch = node.branches[index]
        return end if branch is None else _walk(branch, data, end, path, out, stream)
    if isinstance(node, _Array):
        item = 0
        while True:
            count, end = read_long(data, pos)
            if count < 0:  # a block with its byte size, which changes: write the count alone
                count = -count
                _size, end = read_long(data, end)
            out.append(encode_long(count))
            pos = end
            if count == 0:
                return pos
            for _ in range(count):
                pos = _walk(node.items, data, pos, (*path, item), out, stream)
                item += 1
    for step in node.steps:
        if isinstance(step, _Skip | _NullStep):
            stream.seek(pos)
            fastavro.schemaless_reader(stream, step.schema, None)
            end = stream.tell()
            out.append(data[pos:end] if isinstance(step, _Skip) else step.null)
            pos = end
        elif isinstance(step, _HoleStep):
            pos = _skip_hole(step, data, pos)
            out.append(Hole((*path, step.name), step.kind, step.value_prefix, step.null_prefix))
        else:
            pos = _walk(step.node, data, pos, (*path, step.name), out, stream)
    return pos


def _skip_hole(step: _HoleStep, data: bytes, pos: int) -> int:
    if step.null_prefix is not None:
        index, pos = read_long(data, pos)
        if encode_long(index) == step.null_prefix:
            return pos
    if step.kind in _WIDTHS:
        return pos + _WIDTHS[step.kind]
    value, pos = read_long(data, pos)
    return pos + value if step.kind == "string" else pos
