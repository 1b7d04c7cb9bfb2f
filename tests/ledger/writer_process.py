"""A writer run as a separate process by the tests: appends numbered batches to a ledger.

    python tests/ledger/writer_process.py URL FIRST_BATCH N_BATCHES BATCH_SIZE [--overlap]

Batch b holds events (b, 0) .. (b, BATCH_SIZE-1), each on stream f"batch-{b}". It prints
"appending b" before and "committed b APPENDED SKIPPED SECONDS" after each append, so a
test can kill it part-way through the next one.
"""

from __future__ import annotations

import sys
import time

from skyledger.ledger import DatapointAdded, Ledger


def batch_events(batch: int, size: int) -> list[DatapointAdded]:
    """Return the events of one numbered batch (the same content in every process)."""
    return [
        DatapointAdded(
            stream=f"batch-{batch}",
            datapoint_id=f"{batch:016x}{i:016x}",
            kind="detection",
            body={"batch": batch, "i": i, "pad": "x" * 200},
        )
        for i in range(size)
    ]


def main() -> None:
    url, first, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    with Ledger.open(url) as ledger:
        print("ready", flush=True)
        for batch in range(first, first + count):
            events = batch_events(batch, size)
            print(f"appending {batch}", flush=True)
            started = time.perf_counter()
            result = ledger.append(events)
            took = time.perf_counter() - started
            print(f"committed {batch} {result.appended} {result.skipped} {took:.3f}", flush=True)


if __name__ == "__main__":
    main()
