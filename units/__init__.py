"""Units: the scientists' code on the four tiers (T0 add, T1 combine, T2 augment, T3 react).

Unit authors import from here (and from ``units.testing`` in their tests); magnitude,
flux and time helpers are in ``units.photometry``. Units are pure: they never touch the
store, the bus or the clock.
"""

from skyledger.units.alerts import Alert, Blob, Datapoint, Unreadable, survey_of
from skyledger.units.base import Unit, UnitConfig
from skyledger.units.combiners import alert_time
from skyledger.units.contracts import Combiner, Filter, Reactor, Shaper, Source, T2Binding, T2Unit
from skyledger.units.registry import available_units, load_unit, register_unit
from skyledger.units.views import (
    Decision,
    LightCurve,
    Reaction,
    State,
    StockSummary,
    T2View,
    latest_bodies,
)

__all__ = [
    "Alert",
    "Blob",
    "Combiner",
    "Datapoint",
    "Decision",
    "Filter",
    "LightCurve",
    "Reaction",
    "Reactor",
    "Shaper",
    "Source",
    "State",
    "StockSummary",
    "T2Binding",
    "T2Unit",
    "T2View",
    "Unit",
    "UnitConfig",
    "Unreadable",
    "alert_time",
    "available_units",
    "latest_bodies",
    "load_unit",
    "register_unit",
    "survey_of",
]
