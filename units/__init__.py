"""Units: the scientists' code on the four tiers (T0 add, T1 combine, T2 augment, T3 react).

Units are pure: they never touch the store, the bus or the clock.
"""

__all__: list[str] = []
