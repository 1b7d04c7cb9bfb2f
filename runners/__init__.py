"""The runners: the command line, the drivers of the tiers, the live workers, the API.

Two sources belong here rather than to the pure units, since they read a bus or keep
time; they are named to the unit registry, and imported when a job names them.
"""

from skyledger.units.registry import register_unit_at

register_unit_at("KafkaSource", "skyledger.runners.kafka:KafkaSource")
register_unit_at("SimulatedSource", "skyledger.runners.simulate:SimulatedSource")
