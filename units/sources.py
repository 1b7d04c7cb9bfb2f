"""Sources: alert packets from files, directories, gzip files and tar archives.

:func:`iter_packets` reads each path in the order given: a directory recursively in
sorted path order (only files named like packets, see :data:`PACKET_SUFFIXES`; hidden
files are skipped), a tar archive (``.tar``, ``.tar.gz``, ``.tgz``, ``.tar.bz2``,
``.tar.xz``) member by member in archive order, any other file as one blob (gunzipped
first if it starts with the gzip magic). Each blob is an Avro container or a run of
Confluent-framed packets (:mod:`units.packets`). Bad input never raises: it becomes an
:class:`~units.alerts.Unreadable` with the reason, and reading goes on with the next
packet.
"""

from __future__ import annotations

import gzip
import tarfile
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import ClassVar

from pydantic import Field

from skyledger.ledger.canonical import content_hash
from skyledger.units.alerts import Alert, Blob, Unreadable
from skyledger.units.base import UnitConfig
from skyledger.units.contracts import Source
from skyledger.units.packets.decode import decode, unreadable
from skyledger.units.packets.identify import identify

__all__ = [
    "PACKET_SUFFIXES",
    "TAR_SUFFIXES",
    "FileSource",
    "iter_blob",
    "iter_blobs",
    "iter_decoded",
    "iter_packets",
    "listing",
]

TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
PACKET_SUFFIXES = (".avro", ".avro.gz", ".bin", *TAR_SUFFIXES)
"""Names of files taken from directories and tar archives (case-insensitive)."""

_GZIP_MAGIC = b"\x1f\x8b"


def iter_packets(paths: Iterable[str | Path]) -> Iterator[Alert | Unreadable]:
    """Yield every alert (or unreadable packet) found under ``paths``, in a fixed order."""
    return iter_decoded(iter_blobs(paths))


def iter_decoded(items: Iterable[Blob | Unreadable]) -> Iterator[Alert | Unreadable]:
    """Yield the alerts of each blob (see :func:`iter_blob`), and what was unreadable
    already as it is."""
    for item in items:
        if isinstance(item, Blob):
            yield from iter_blob(item.data, item.locator, item.schema)
        else:
            yield item


def iter_blobs(paths: Iterable[str | Path], start: int = 0) -> Iterator[Blob | Unreadable]:
    """Yield the undecoded blobs under ``paths`` in the order :func:`iter_packets` reads
    them (files that cannot be read become Unreadable), from the ``start``-th on: files
    before it are not read (members of a tar archive are read through)."""
    index = 0
    for item in paths:
        path = Path(item)
        files = _walk(path) if path.is_dir() else [path]
        for file in files:
            if not file.exists():
                if index >= start:
                    yield unreadable(b"", str(file), f"no such file or directory: {file}")
                index += 1
                continue
            if index < start and not file.name.lower().endswith(TAR_SUFFIXES):
                index += 1
                continue
            for blob in _iter_file(file):
                if index >= start:
                    yield blob
                index += 1


def listing(paths: Iterable[str | Path]) -> list[tuple[str, int, int]]:
    """Return the files :func:`iter_blobs` reads under ``paths``, in order, each with its
    size and modification time (nanoseconds); a missing path is listed with -1, -1."""
    found = []
    for item in paths:
        path = Path(item)
        for file in _walk(path) if path.is_dir() else [path]:
            try:
                stat = file.stat()
            except OSError:
                found.append((str(file), -1, -1))
                continue
            found.append((str(file.resolve()), stat.st_size, stat.st_mtime_ns))
    return found


def iter_blob(data: bytes, locator: str, schema: str | None = None) -> Iterator[Alert | Unreadable]:
    """Yield the alerts in one blob of bytes (gzip, container or Confluent-framed);
    ``schema``: see :attr:`units.alerts.Blob.schema`."""
    if data.startswith(_GZIP_MAGIC):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            yield unreadable(data, f"{locator}#0", f"corrupt gzip data: {exc}")
            return
    for item in decode(data, locator, schema):
        yield item if isinstance(item, Unreadable) else identify(item)


def _walk(root: Path) -> list[Path]:
    files = []
    for path in root.rglob("*"):
        hidden = any(part.startswith(".") for part in path.relative_to(root).parts)
        if not hidden and _is_packet_name(path.name) and path.is_file():
            files.append(path)
    return sorted(files)


def _is_packet_name(name: str) -> bool:
    return name.lower().endswith(PACKET_SUFFIXES)


def _iter_file(path: Path) -> Iterator[Blob | Unreadable]:
    if path.name.lower().endswith(TAR_SUFFIXES):
        yield from _iter_tar(path)
        return
    try:
        data = path.read_bytes()
    except OSError as exc:
        yield unreadable(b"", str(path), f"cannot read file: {exc}")
        return
    yield Blob(data, str(path))


def _iter_tar(path: Path) -> Iterator[Blob | Unreadable]:
    """Yield the packets of the members of a tar archive, in archive order."""
    last = ""
    try:
        with tarfile.open(path, mode="r|*") as archive:
            for member in archive:
                base = member.name.rsplit("/", 1)[-1]
                if not member.isfile() or base.startswith(".") or not _is_packet_name(base):
                    continue
                last = member.name
                if base.lower().endswith(TAR_SUFFIXES):
                    reason = "nested archive not read: unpack it first"
                    yield unreadable(b"", f"{path}!{member.name}", reason)
                    continue
                handle = archive.extractfile(member)
                data = handle.read() if handle is not None else b""
                yield Blob(data, f"{path}!{member.name}")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        where = f"after member {last}" if last else "before any member"
        yield unreadable(b"", f"{path}!", f"corrupt tar archive ({where}): {exc}")


class FileSource(Source):
    """Alerts from files, directories and archives on disk (see :func:`iter_packets`)."""

    version: ClassVar[str] = "1.0"

    class Config(UnitConfig):
        """Where the packets are."""

        paths: list[str] = Field(
            description="Files, directories (read recursively, sorted) or tar archives, "
            "read in the order given."
        )

    config: FileSource.Config

    def packets(self) -> Iterator[Alert | Unreadable]:
        """Yield every alert or unreadable packet under the configured paths."""
        return iter_packets(self.config.paths)

    def blobs(self, start: int = 0) -> Iterator[Blob | Unreadable]:
        """Yield the files and archive members under the configured paths, undecoded,
        from the ``start``-th on."""
        return iter_blobs(self.config.paths, start)

    def problems(self) -> list[str]:
        """Return a line for each configured path that does not exist."""
        return [
            f"paths: {path}: no such file or directory"
            for path in self.config.paths
            if not Path(path).exists()
        ]

    def key(self) -> str:
        """Return the configuration hash and a digest of the files to read (paths, sizes,
        modification times): a folder that gained or changed files is a new source."""
        files = content_hash("listing", listing(self.config.paths))
        return f"{self.name}:{self.config_hash}:{files}"
