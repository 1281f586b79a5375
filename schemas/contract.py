"""Contract models: the one declaration of every source, library and mart table.

Contracts live as YAML under ``schemas/contracts/`` (one file per source system)
and ``schemas/codelists.yaml``. Everything else - raw/staged schemas, expectation
suites, masking policies, the catalogue, the generator's output - is derived
from these models, so a column is described exactly once.
"""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

PiiClass = Literal["direct_identifier", "quasi_identifier", "sensitive", "none"]
OpenDataCategory = Literal["non_open", "conditional", "unconditional"]
ColumnType = Literal["string", "integer", "decimal", "date", "timestamp", "boolean"]
Frequency = Literal["hourly", "daily", "weekly", "monthly", "quarterly", "once"]
FileFormat = Literal["csv", "xlsx", "json_dump", "jsonl"]
Encoding = Literal["utf-8", "utf-8-sig", "gbk"]
TableKind = Literal["master", "event", "reference"]
# Library and mart tables (built by the platform, not delivered).
DerivedKind = Literal["dimension", "fact", "link", "worklist", "history", "aggregate"]
Zone = Literal["library", "marts"]
Sensitivity = Literal["public", "internal", "restricted", "secret"]

# What a column *means*; drives normalisation at staging, fault injection in the
# generator, PII recognition and masking.
Semantic = Literal[
    "resident_id",  # GB 11643 resident ID number (15 or 18 digits)
    "mobile_phone",  # 11-digit mobile
    "phone",  # mobile or Shanghai landline
    "person_name",
    "address",
    "street",  # sub-district (街道) name or code
    "committee",  # neighbourhood committee (居委会)
    "free_text",  # notes typed by staff: may contain PII
    "senior_card",  # senior card (敬老卡) number
    "certificate_no",
    "identifier",  # a system's own record / entity identifier
    "code",  # value from a code list
    "amount",
    "measure",
    "latitude",
    "longitude",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CodeValue(_Strict):
    code: str
    zh: str
    en: str
    aliases: list[str] = Field(default_factory=list)
    valid_until: date | None = None  # e.g. 五角场镇 before the 2019 split


class CodeList(_Strict):
    name: str
    zh: str
    en: str
    values: list[CodeValue]

    def codes(self) -> set[str]:
        return {v.code for v in self.values}

    def lookup(self) -> dict[str, str]:
        """Every accepted spelling (code, Chinese label, alias) -> code."""
        out: dict[str, str] = {}
        for v in self.values:
            for spelling in (v.code, v.zh, v.en, *v.aliases):
                out[spelling] = v.code
        return out


class Column(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")  # canonical English name
    # header / key exactly as the source system delivers it (derived tables: the name itself)
    source: str
    type: ColumnType
    zh: str  # Chinese label
    pii: PiiClass
    nullable: bool = True
    semantic: Semantic | None = None
    codelist: str | None = None
    range: tuple[float, float] | None = None  # physically plausible bounds (inclusive)
    unique: bool = False
    description: str = ""

    @model_validator(mode="before")
    @classmethod
    def _source_defaults_to_name(cls, data: object) -> object:
        if isinstance(data, dict) and "source" not in data and "name" in data:
            return {**data, "source": data["name"]}
        return data

    @model_validator(mode="after")
    def _codelist_needs_code(self) -> Column:
        if self.codelist and self.semantic not in ("code", "street"):
            raise ValueError(f"column {self.name}: a codelist column must have semantic 'code' or 'street'")
        return self


class Delivery(_Strict):
    format: FileFormat
    encoding: Encoding = "utf-8"
    frequency: Frequency
    # Path template under landing/, with {date} (delivery date) and optional {street}.
    path: str
    # XLSX: number of title rows above the header row.
    title_rows: int = 0
    # JSON dumps: where the records array sits, e.g. "data.records".
    records_path: str | None = None
    # Date/time forms the system writes; the first is its usual one.
    date_forms: list[str] = Field(default_factory=lambda: ["%Y-%m-%d"])
    timestamp_form: str = "%Y-%m-%d %H:%M:%S"
    # Event tables are partitioned by day from staging on.
    partitioned: bool = False
    # Multiplier on the generator's fault rates (telemetry is cleaner than typed forms).
    fault_scale: float = 1.0


class _TableBase(_Strict):
    """What every declared table has: names, grain, key, openness and its columns."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    zh: str
    en: str
    description: str
    grain: str  # what one row is
    primary_key: list[str]
    open_data: OpenDataCategory
    sensitivity: Sensitivity
    owner_department: str | None = None  # defaults to the system's / data set's
    columns: list[Column]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"{self.name} has no column {name!r}")

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def _check_columns(self) -> None:
        names = {c.name for c in self.columns}
        if len(names) != len(self.columns):
            raise ValueError(f"table {self.name}: duplicate column names")
        missing = [k for k in self.primary_key if k not in names]
        if missing:
            raise ValueError(f"table {self.name}: primary key columns {missing} are not declared")


class Table(_TableBase):
    """A source table as its system delivers it."""

    kind: TableKind
    delivery: Delivery

    @property
    def event_time_columns(self) -> list[str]:
        """Required dates/times of an event table: they cannot lie after the delivery date."""
        if self.kind != "event":
            return []
        return [c.name for c in self.columns if not c.nullable and c.type in ("date", "timestamp")]

    @property
    def person_bearing(self) -> bool:
        """Does a row name a person (elder, volunteer, caregiver)?"""
        return any(c.semantic in ("resident_id", "person_name") for c in self.columns)

    @model_validator(mode="after")
    def _keys_exist(self) -> Table:
        self._check_columns()
        sources = [c.source for c in self.columns]
        if len(set(sources)) != len(sources):
            raise ValueError(f"table {self.name}: duplicate source headers")
        return self


class SourceSystem(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    zh: str
    en: str
    description: str
    owner_department: str
    tables: list[Table]

    def table_owner(self, table: Table) -> str:
        return table.owner_department or self.owner_department


class DerivedTable(_TableBase):
    """A table the platform builds (library or marts zone), declared like a source table.

    ``build`` names how it is built: ``sql`` (``assets/<zone>/sql/<name>.sql``,
    one SELECT over ``staged.*`` / ``library.*`` views, read by the catalogue's
    lineage) or ``python`` (a pure function, e.g. identity resolution), and
    ``upstream`` the tables it reads.
    """

    kind: DerivedKind
    build: Literal["sql", "python"] = "sql"
    upstream: list[str] = Field(default_factory=list)

    @property
    def event_time_columns(self) -> list[str]:
        return []

    @model_validator(mode="after")
    def _keys_exist(self) -> DerivedTable:
        self._check_columns()
        return self


class Dataset(_Strict):
    """One data set of the library (the city's six: basics, services, health, providers,
    workforce, supervision, plus the master elder index) or of the marts."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    zh: str
    en: str
    description: str
    zone: Zone
    owner_department: str
    tables: list[DerivedTable]

    def table_owner(self, table: DerivedTable) -> str:
        return table.owner_department or self.owner_department
