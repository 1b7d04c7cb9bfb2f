"""``skyledger`` (``runners.cli``) with the units of ``bench/live_units.py`` registered:
how ``bench/live.py`` starts the relay and workers of its scale-out phase, whose job
names a unit that is the bench's own rather than an installed entry point.

    python bench/live_worker.py worker t2 JOB --ledger URL --nats URL --prefix P
"""

import live_units  # noqa: F401  (registers the bench's units; bench/ is sys.path[0])

from skyledger.runners.cli import main

if __name__ == "__main__":
    main()
