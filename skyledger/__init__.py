"""skyledger: an event-sourced platform for the alert streams of time-domain astronomy.

The code lives in four folders at the top of the repository, each installed under this
one import package (``skyledger/`` holds a link to each), layered one way:

* ``skyledger.runners``: the command line, the local, live and replay drivers, the API;
* ``skyledger.projections``: the tiers as projectors, the read model and its queries;
* ``skyledger.units``: the pure units of analysis and their contracts;
* ``skyledger.ledger``: the append-only event store; it knows no astronomy.
"""
