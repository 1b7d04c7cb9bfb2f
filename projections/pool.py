"""Worker processes for the tiers: T0's decoding and shaping, T1's and T2's units.

Decoding an alert packet and turning it into some 25 encoded events is pure CPU work on
one packet at a time, so it spreads over processes: the runner's process reads blobs
(files, archive members), hands them out in chunks, and takes back, in the order it sent
them, every packet's encoded rows and its filters' verdicts (``projections.t0.Shaped``).
What depends on earlier packets (autocomplete, repeats within the run) and the appending
itself stay in the runner's process.

Workers are forks of a ``forkserver`` (``spawn`` where there is none), never of the
runner's process, which holds database threads; they receive the job's units pickled
once, at start. At most
``2 * workers`` chunks are in flight, so memory stays bounded on endless streams.
"""

from __future__ import annotations

import atexit
import multiprocessing
import pickle
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import replace
from types import TracebackType
from typing import Any, Self, TypeVar

from ledger import Ledger
from ledger.errors import ConfigError
from projections.t0 import Shaped, shape_packet
from units import Blob, Filter, Shaper, Unreadable
from units.sources import iter_blob

__all__ = ["OrderedPool", "ShapingPool", "each_chunk", "pickled"]

_In = TypeVar("_In")
_Out = TypeVar("_Out")

_CHUNK_BYTES = 2_000_000  # about 25 ZTF packets with cutouts
_CHUNK_BLOBS = 64

# What a worker process knows, set once by _start.
_shapers: Mapping[str, Shaper] = {}
_filters: Sequence[Filter | None] = ()
_run_id = ""
_source = ""

Chunk = list[Blob | Unreadable]


def _start(units: bytes, run_id: str, source: str) -> None:
    global _shapers, _filters, _run_id, _source
    _shapers, _filters = pickle.loads(units)
    _run_id, _source = run_id, source


def _shape_chunk(chunk: Chunk) -> list[list[Shaped]]:
    """Return, for each blob of a chunk, its packets shaped (in a worker process)."""
    done = []
    for item in chunk:
        if isinstance(item, Unreadable):
            packets: Iterable[object] = [item]
        else:
            packets = iter_blob(item.data, item.locator)
        shaped = []
        for packet in packets:
            one = shape_packet(packet, _shapers, _filters, _run_id, _source)  # type: ignore[arg-type]
            if isinstance(item, Blob) and one.packet == item.data:
                one = replace(one, packet=None)  # the parent has these bytes already
            shaped.append(one)
        done.append(shaped)
    return done


class OrderedPool:
    """Worker processes that run one function over chunks, giving results in order.

    ``initializer(*initargs)`` runs once in each worker; at most ``2 * workers`` chunks are
    in flight, so memory stays bounded on endless input.
    """

    def __init__(
        self, workers: int, initializer: Callable[..., None], initargs: tuple[Any, ...]
    ) -> None:
        self.workers = workers
        self._pool = ProcessPoolExecutor(
            max_workers=workers, mp_context=_context(), initializer=initializer, initargs=initargs
        )

    def map(self, fn: Callable[[_In], _Out], chunks: Iterable[_In]) -> Iterator[tuple[_In, _Out]]:
        """Yield each chunk with ``fn(chunk)`` computed in a worker, in the order given."""
        pending: deque[tuple[_In, Future[_Out]]] = deque()
        for chunk in chunks:
            pending.append((chunk, self._pool.submit(fn, chunk)))
            if len(pending) >= 2 * self.workers:
                chunk, future = pending.popleft()
                yield chunk, future.result()
        while pending:
            chunk, future = pending.popleft()
            yield chunk, future.result()

    def close(self) -> None:
        """Stop the workers (waiting for none of the chunks still queued)."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _context() -> multiprocessing.context.BaseContext:
    """Return the forkserver context where there is one (workers start as forks of a
    clean server process that has imported skyledger once), else spawn."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["projections.pool", "projections.t2"])
    return context


def pickled(what: object, field: str) -> bytes:
    """Return ``what`` pickled for the workers, or raise ConfigError naming ``field``."""
    try:
        return pickle.dumps(what)
    except (pickle.PicklingError, TypeError, AttributeError) as exc:
        msg = f"{field}: cannot be sent to worker processes ({exc})"
        raise ConfigError(msg) from exc


class ShapingPool(OrderedPool):
    """Worker processes that turn blobs into shaped packets, in order."""

    def __init__(
        self,
        workers: int,
        shapers: Mapping[str, Shaper],
        filters: Sequence[Filter | None],
        run_id: str,
        source: str,
    ) -> None:
        units = pickled((dict(shapers), list(filters)), "workers: the job's shapers and filters")
        super().__init__(workers, _start, (units, run_id, source))

    def shape(
        self, blobs: Iterable[Blob | Unreadable]
    ) -> Iterator[tuple[bytes | None, list[Shaped]]]:
        """Yield, for each blob in order, its bytes and its shaped packets."""
        for chunk, done in self.map(_shape_chunk, _chunks(blobs)):
            for item, shaped in zip(chunk, done, strict=True):
                yield (item.data if isinstance(item, Blob) else None), shaped


def _chunks(blobs: Iterable[Blob | Unreadable]) -> Iterator[Chunk]:
    chunk: Chunk = []
    size = 0
    for item in blobs:
        chunk.append(item)
        size += len(item.data) if isinstance(item, Blob) else 0
        if size >= _CHUNK_BYTES or len(chunk) >= _CHUNK_BLOBS:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


def each_chunk(
    projector: Any,
    method: str,
    chunks: Sequence[_In],
    workers: int,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    what: str,
) -> Iterator[tuple[_In, Any]]:
    """Yield each chunk with ``projector.<method>(chunk)``, in order.

    With ``workers`` above 1 and more than one chunk, each worker process builds its own
    ``type(projector)(Ledger.open(settings), *args, **kwargs)`` on the projector's ledger
    settings and runs the method there; ``what`` names the units for the error raised
    if they cannot be sent to workers. Otherwise the projector runs it here.
    """
    if workers <= 1 or len(chunks) <= 1:
        run = getattr(projector, method)
        for chunk in chunks:
            yield chunk, run(chunk)
        return
    spec = pickled((type(projector), projector.ledger.settings, args, kwargs, method), what)
    with OrderedPool(workers, _start_projector, (spec,)) as pool:
        yield from pool.map(_run_projector, chunks)


_projector_method: Callable[[Any], Any] | None = None  # in a worker: the method it runs


def _start_projector(spec: bytes) -> None:
    global _projector_method
    cls, settings, args, kwargs, method = pickle.loads(spec)
    ledger = Ledger.open(settings)
    atexit.register(ledger.close)
    _projector_method = getattr(cls(ledger, *args, **kwargs), method)


def _run_projector(chunk: Any) -> Any:
    assert _projector_method is not None, "worker not started"
    return _projector_method(chunk)
