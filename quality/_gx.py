"""Great Expectations, imported once and quietly.

GX 1.x imports the deprecated ``sre_constants`` module, which raises under the
project's "warnings are errors" test setting; every quality module takes ``gx``
from here instead of importing it directly.
"""

from __future__ import annotations

import warnings

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from great_expectations.expectations.row_conditions import Column as RowColumn

E = gx.expectations

__all__ = ["E", "ProgressBarsConfig", "RowColumn", "gx"]
