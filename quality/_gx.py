"""Great Expectations, imported once, quietly and only when first used.

GX 1.x imports the deprecated ``sre_constants`` module, which raises under the
project's "warnings are errors" test setting; every quality module takes ``gx``
from here instead of importing it directly.

Importing GX takes seconds, and the Dagster definitions build the quality rules
(to describe each asset check) when they load. So at run time the names here are
stand-ins that import GX on first real use:

* ``E.ExpectSomething(**kwargs)`` returns the expectation *deferred*: built (once)
  the first time anything reads it (``.dict()``, ``.copy()``, an attribute), with any
  deferred argument built first;
* ``RowColumn("status") == "DECEASED"`` (also ``!=``, ``<``, ``<=``, ``>``, ``>=``)
  is a deferred GX row condition;
* ``gx`` and ``ProgressBarsConfig`` import GX on attribute access or call.

Type checkers see the real GX names.
"""

from __future__ import annotations

import importlib
import operator
import warnings
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from great_expectations.expectations.row_conditions import Column as RowColumn

    E = gx.expectations
else:

    def _import(module: str) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            importlib.import_module("great_expectations")
            return importlib.import_module(module)

    def _build(value: Any) -> Any:
        if isinstance(value, _Deferred):
            return value.build()
        if isinstance(value, list | tuple):
            return type(value)(_build(v) for v in value)
        if isinstance(value, dict):
            return {k: _build(v) for k, v in value.items()}
        return value

    class _Deferred:
        """A GX object not built yet: built once, on first use; then it stands for that object."""

        _built: Any = None

        def _make(self) -> Any:
            raise NotImplementedError

        def build(self) -> Any:
            if self._built is None:
                self._built = self._make()
            return self._built

        def __getattr__(self, attr: str) -> Any:
            if attr.startswith("__") and attr.endswith("__"):
                raise AttributeError(attr)
            return getattr(self.build(), attr)

    class _Expectation(_Deferred):
        def __init__(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            self._name, self._args, self._kwargs = name, args, kwargs

        def _make(self) -> Any:
            cls = getattr(_import("great_expectations.expectations"), self._name)
            return cls(*_build(self._args), **_build(self._kwargs))

        def __repr__(self) -> str:
            return f"{self._name}(deferred, {self._kwargs!r})"

    class _Condition(_Deferred):
        def __init__(self, column: str, op: str, value: Any) -> None:
            self._column, self._op, self._value = column, op, value

        def _make(self) -> Any:
            column = _import("great_expectations.expectations.row_conditions").Column(self._column)
            return getattr(operator, self._op)(column, _build(self._value))

        def __repr__(self) -> str:
            return f"RowColumn({self._column!r}) {self._op} {self._value!r} (deferred)"

    class RowColumn:
        """``RowColumn(name) <op> value``: a deferred GX row condition."""

        def __init__(self, name: str) -> None:
            self.name = name

        def __eq__(self, other: object) -> _Condition:  # type: ignore[override]
            return _Condition(self.name, "eq", other)

        def __ne__(self, other: object) -> _Condition:  # type: ignore[override]
            return _Condition(self.name, "ne", other)

        def __lt__(self, other: object) -> _Condition:
            return _Condition(self.name, "lt", other)

        def __le__(self, other: object) -> _Condition:
            return _Condition(self.name, "le", other)

        def __gt__(self, other: object) -> _Condition:
            return _Condition(self.name, "gt", other)

        def __ge__(self, other: object) -> _Condition:
            return _Condition(self.name, "ge", other)

        __hash__ = None  # type: ignore[assignment]

    class _Expectations:
        def __getattr__(self, name: str) -> Any:
            if name.startswith("Expect"):
                return lambda *args, **kwargs: _Expectation(name, args, kwargs)
            return getattr(_import("great_expectations.expectations"), name)

    class _Module:
        def __init__(self, module: str, attr: str | None = None) -> None:
            self._module, self._attr = module, attr

        def _target(self) -> Any:
            loaded = _import(self._module)
            return getattr(loaded, self._attr) if self._attr else loaded

        def __getattr__(self, attr: str) -> Any:
            return getattr(self._target(), attr)

        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return self._target()(*args, **kwargs)

    gx = _Module("great_expectations")
    E = _Expectations()
    ProgressBarsConfig = _Module("great_expectations.data_context.types.base", "ProgressBarsConfig")

__all__ = ["E", "ProgressBarsConfig", "RowColumn", "gx"]
