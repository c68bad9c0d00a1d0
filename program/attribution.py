"""The attribution models a program may choose (KPIS.md "Attribution"): a setting, so it lives here.

`kpis.metrics` re-exports the enum for the engine and for migrations that already name it there.
"""

from enum import StrEnum


class AttributionModel(StrEnum):
    FIRST_TOUCH = "first_touch"
    LAST_TOUCH = "last_touch"
    LINEAR = "linear"
    TIME_DECAY = "time_decay"
    POSITION_BASED = "position_based"
