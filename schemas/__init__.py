"""Contracts: every source table and code list declared once (see ``contract.py``)."""

from schemas.registry import Registry, load_registry

__all__ = ["Registry", "load_registry"]
