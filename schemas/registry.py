"""Load and cross-check every contract under ``schemas/``."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import yaml

from schemas.contract import CodeList, Dataset, DerivedTable, SourceSystem, Table

SCHEMA_DIR = Path(__file__).resolve().parent


class ContractError(ValueError):
    """A contract is inconsistent (unknown code list, duplicate table, ...)."""


@dataclass(frozen=True)
class Registry:
    systems: tuple[SourceSystem, ...]
    codelists: dict[str, CodeList]
    # library and mart data sets (``schemas/library/``, ``schemas/marts/``)
    datasets: tuple[Dataset, ...] = ()

    def tables(self) -> list[tuple[SourceSystem, Table]]:
        return [(s, t) for s in self.systems for t in s.tables]

    def table(self, name: str) -> Table:
        for _, t in self.tables():
            if t.name == name:
                return t
        raise KeyError(f"no table {name!r} in the contracts")

    def derived_tables(self, zone: str | None = None) -> list[tuple[Dataset, DerivedTable]]:
        """Library and mart tables (optionally of one zone), with their data set."""
        return [(d, t) for d in self.datasets if zone in (None, d.zone) for t in d.tables]

    def derived(self, name: str) -> DerivedTable:
        for _, t in self.derived_tables():
            if t.name == name:
                return t
        raise KeyError(f"no library or mart table {name!r} in the contracts")

    def dataset_of(self, table_name: str) -> Dataset:
        for d, t in self.derived_tables():
            if t.name == table_name:
                return d
        raise KeyError(f"no library or mart table {table_name!r}")

    def zone_of(self, table_name: str) -> str:
        """``staged`` for a source table, else the data set's zone."""
        if any(t.name == table_name for _, t in self.tables()):
            return "staged"
        return self.dataset_of(table_name).zone

    def system_of(self, table_name: str) -> SourceSystem:
        for s, t in self.tables():
            if t.name == table_name:
                return s
        raise KeyError(f"no table {table_name!r} in the contracts")

    def system(self, name: str) -> SourceSystem:
        for s in self.systems:
            if s.name == name:
                return s
        raise KeyError(f"no source system {name!r}")

    def codelist(self, name: str) -> CodeList:
        return self.codelists[name]

    def validate(self) -> None:
        problems: list[str] = []
        seen: set[str] = set()
        for s, t in self.tables():
            if t.name in seen:
                problems.append(f"table {t.name} declared twice")
            seen.add(t.name)
            for c in t.columns:
                if c.codelist and c.codelist not in self.codelists:
                    problems.append(f"{s.name}.{t.name}.{c.name}: unknown code list {c.codelist!r}")
                if c.semantic in ("code",) and not c.codelist:
                    problems.append(f"{s.name}.{t.name}.{c.name}: code column without a code list")
                if c.range and c.type not in ("integer", "decimal"):
                    problems.append(f"{s.name}.{t.name}.{c.name}: range on a non-numeric column")
            if t.delivery.format == "json_dump" and not t.delivery.records_path:
                problems.append(f"{t.name}: JSON dump without records_path")
            if t.delivery.title_rows and t.delivery.format != "xlsx":
                problems.append(f"{t.name}: title_rows only applies to xlsx")
        for d, dt in self.derived_tables():
            if dt.name in seen:
                problems.append(f"table {dt.name} declared twice")
            seen.add(dt.name)
            for c in dt.columns:
                if c.codelist and c.codelist not in self.codelists:
                    problems.append(f"{d.name}.{dt.name}.{c.name}: unknown code list {c.codelist!r}")
        for d, dt in self.derived_tables():
            for up in dt.upstream:
                if up not in seen:
                    problems.append(f"{d.name}.{dt.name}: upstream {up!r} is not a declared table")
        if problems:
            raise ContractError("contract problems:\n  " + "\n  ".join(problems))


def _load_codelists(path: Path) -> dict[str, CodeList]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    lists = [CodeList.model_validate({"name": name, **body}) for name, body in data.items()]
    return {c.name: c for c in lists}


def load_registry(schema_dir: Path | None = None) -> Registry:
    """Load every source-system contract and code list, validated."""
    return _load_cached(str(schema_dir or SCHEMA_DIR))


@functools.cache
def _load_cached(schema_dir: str) -> Registry:
    root = Path(schema_dir)
    systems = []
    for f in sorted((root / "contracts").glob("*.yaml")):
        try:
            systems.append(SourceSystem.model_validate(yaml.safe_load(f.read_text(encoding="utf-8"))))
        except Exception as exc:  # re-raise with the file name, which pydantic does not know
            raise ContractError(f"{f.name}: {exc}") from exc
    datasets = []
    for zone in ("library", "marts"):
        for f in sorted((root / zone).glob("*.yaml")):
            try:
                data = yaml.safe_load(f.read_text(encoding="utf-8"))
                datasets.append(Dataset.model_validate({"zone": zone, **data}))
            except Exception as exc:
                raise ContractError(f"{zone}/{f.name}: {exc}") from exc
    reg = Registry(
        systems=tuple(systems),
        codelists=_load_codelists(root / "codelists.yaml"),
        datasets=tuple(datasets),
    )
    reg.validate()
    return reg
