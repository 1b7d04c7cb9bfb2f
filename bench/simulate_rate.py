"""Simulator rates: re-stamping copies of real alerts, beside a full fastavro re-encode.

    python bench/simulate_rate.py [--copies 150] [--write] [PATH ...]

PATH defaults to the shared ``ztf/night`` folder (699 alerts). Measured in one process:

1. decode: reading and decoding the originals once (``iter_packets``).
2. first copy: copy 1 of every original, which also cuts each original into a byte
   template (once per original).
3. restamp: copies 2 to ``copies - 1`` through ``SimulatedSource.packets()`` (the
   steady state of a long simulation), in alerts per second.
4. fastavro: the payloads of one pass encoded with ``fastavro.schemaless_writer`` (what
   re-stamping would cost without templates).
5. with ``--write``: ``write_alerts`` of the whole stream into a temporary folder.

The last line is machine-readable:

    RESULT alerts=... restamp_aps=... first_copy_aps=... fastavro_aps=... write_aps=...
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import fastavro

from skyledger.runners.simulate import Restamper, SimulatedSource, write_alerts
from skyledger.units.alerts import Alert
from skyledger.units.packets.containers import read_packet
from skyledger.units.sources import iter_packets

NIGHT = Path(__file__).resolve().parents[2] / "shared" / "data" / "ztf" / "night"


def main() -> None:
    """Run the measurements and print one line each, then the RESULT line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("paths", nargs="*", default=[str(NIGHT)])
    parser.add_argument("--copies", type=int, default=150)
    parser.add_argument("--write", action="store_true", help="also time write_alerts")
    args = parser.parse_args()

    start = time.perf_counter()
    originals = [a for a in iter_packets(args.paths) if isinstance(a, Alert)]
    n = len(originals)
    print(f"decode      {n} alerts in {time.perf_counter() - start:.2f} s")

    restamper = Restamper(originals)
    start = time.perf_counter()
    firsts = [restamper.restamp(alert, 1) for alert in originals]
    first_aps = n / (time.perf_counter() - start)
    print(f"first copy  {first_aps:,.0f} alerts/s (cuts the templates)")

    schemas: dict[str, Any] = {}
    start = time.perf_counter()
    for copy in firsts:
        text = read_packet(copy.packet)[0]
        if text not in schemas:
            schemas[text] = fastavro.parse_schema(json.loads(text))
        fastavro.schemaless_writer(io.BytesIO(), schemas[text], dict(copy.payload))
    fastavro_aps = n / (time.perf_counter() - start)
    print(f"fastavro    {fastavro_aps:,.0f} alerts/s (schemaless_writer of the same payloads)")

    source = SimulatedSource({"paths": args.paths, "copies": args.copies})
    stream = source.packets()
    for _ in range(n * 2):  # originals and copy 1: decoding and templates, timed above
        next(stream)
    start = time.perf_counter()
    steady = sum(1 for _ in stream)
    restamp_aps = steady / (time.perf_counter() - start)
    total = n * args.copies
    print(f"restamp     {restamp_aps:,.0f} alerts/s over {steady:,} copies ({total:,} in all)")

    write_aps = 0.0
    if args.write:
        with tempfile.TemporaryDirectory() as folder:
            start = time.perf_counter()
            alerts = (a for a in source.packets() if isinstance(a, Alert))
            files = write_alerts(alerts, Path(folder) / "out")
            write_aps = total / (time.perf_counter() - start)
            print(f"write       {write_aps:,.0f} alerts/s (restamp + write, {len(files)} files)")
    print(
        f"RESULT alerts={total} restamp_aps={restamp_aps:.0f} first_copy_aps={first_aps:.0f} "
        f"fastavro_aps={fastavro_aps:.0f} write_aps={write_aps:.0f}"
    )


if __name__ == "__main__":
    main()
