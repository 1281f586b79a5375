"""The leak gate: no direct identifier leaves in an export package.

:func:`scan_package` reads every file of a finished package back from disk and runs the PII
recognizers (:mod:`masking.recognizers`, through :func:`masking.scrub.find_pii_many` after the
same vectorised pre-filter as scrubbing) over every value and line: Parquet - every value of
every column; CSV (BOM stripped) - the header and every value as text; JSON - every key and
string (``sha256`` values excepted: hex digests are not data); anything else - every line.

Every entity the recognizers know counts as a direct identifier (:data:`DIRECT_ENTITIES`):
resident IDs, mobiles, bank cards and senior cards, and also person names, addresses and
landlines. The one exemption is an organisation's published contact details
(:data:`ORGANISATION_CONTACT`: addresses and landlines) in the columns the caller names (the
export exempts ``pii: none`` columns of ``public`` tables, the facility registry's address
and switchboard). Findings carry masked examples only, never the value.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from masking.recognizers import PLACEHOLDERS
from masking.scrub import candidate_mask, find_pii_many

# Entity types that identify a person directly: any one in a package fails the leak gate. Every
# entity our recognizers know (resident ID, mobile, landline, bank card, person name, address,
# senior card), so a recognizer added later counts too.
DIRECT_ENTITIES = frozenset(PLACEHOLDERS)
# An organisation's published contact details (see the module doc).
ORGANISATION_CONTACT = frozenset({"CN_ADDRESS", "CN_LANDLINE_PHONE"})
_BOM = "\ufeff"


@dataclass(frozen=True)
class LeakFinding:
    file: str
    column: str | None
    entity: str
    count: int
    example: str  # masked

    def __str__(self) -> str:
        where = f"{self.file}:{self.column}" if self.column else self.file
        return f"{where}: {self.count} x {self.entity} (e.g. {self.example})"


class LeakError(RuntimeError):
    """The leak gate found direct identifiers in a package; nothing was written."""

    def __init__(self, findings: list[LeakFinding]) -> None:
        self.findings = findings
        lines = "\n".join(f"  - {f}" for f in findings[:20])
        more = f"\n  ... and {len(findings) - 20} more" if len(findings) > 20 else ""
        super().__init__(
            "泄露检查未通过，导出包未写出 / leak gate failed, no package written: "
            f"{sum(f.count for f in findings)} direct identifier(s)\n{lines}{more}"
        )


def _mask(text: str) -> str:
    if len(text) <= 4:
        return "*" * len(text)
    return text[:2] + "*" * (len(text) - 4) + text[-2:]


def scan_texts(texts: Sequence[str], allowed: frozenset[str] = frozenset()) -> dict[str, tuple[int, str]]:
    """Direct identifiers found in ``texts``: entity -> (count, masked example). Vectorised pre-filter."""
    if not texts:
        return {}
    s = pl.Series("t", list(texts), dtype=pl.String)
    candidates = s.filter(candidate_mask(s)).unique(maintain_order=True).to_list()
    found: dict[str, tuple[int, str]] = {}
    for text, findings in zip(candidates, find_pii_many(candidates), strict=True):
        for entity, start, end in findings:
            if entity in DIRECT_ENTITIES and entity not in allowed:
                n, ex = found.get(entity, (0, _mask(text[start:end])))
                found[entity] = (n + 1, ex)
    return found


def _scan_frame(frame: pl.DataFrame, file: str, exempt: dict[str, frozenset[str]]) -> list[LeakFinding]:
    out = []
    header = scan_texts(frame.columns)
    out += [LeakFinding(file, "(header)", e, n, ex) for e, (n, ex) in header.items()]
    for name in frame.columns:
        values = frame.get_column(name).cast(pl.String).drop_nulls().unique(maintain_order=True).to_list()
        for e, (n, ex) in scan_texts(values, exempt.get(name, frozenset())).items():
            out.append(LeakFinding(file, name, e, n, ex))
    return out


def json_strings(data: object, skip: frozenset[str] = frozenset({"sha256"})) -> list[str]:
    if isinstance(data, dict):
        return [s for k, v in data.items() if k not in skip for s in [str(k), *json_strings(v, skip)]]
    if isinstance(data, list):
        return [s for v in data for s in json_strings(v, skip)]
    return [] if data is None else [str(data)]


def scan_package(
    directory: Path, exempt: dict[str, dict[str, frozenset[str]]] | None = None
) -> list[LeakFinding]:
    """Every direct identifier in every file of ``directory``, read back from disk.

    Parquet: every value of every column; CSV (BOM stripped): the header and every value as
    text; JSON: every key and string (``sha256`` values excepted); other text: every line.
    ``exempt``: file stem -> column -> entity types allowed there (organisation contacts).
    """
    exempt = exempt or {}
    findings: list[LeakFinding] = []
    for path in sorted(directory.iterdir()):
        allowed = exempt.get(path.stem, {})
        if path.suffix == ".parquet":
            findings += _scan_frame(pl.read_parquet(path), path.name, allowed)
        elif path.suffix == ".csv":
            text = path.read_text(encoding="utf-8")
            text = text.removeprefix(_BOM)
            frame = pl.read_csv(io.StringIO(text), infer_schema=False) if text.strip() else pl.DataFrame()
            findings += _scan_frame(frame, path.name, allowed)
        elif path.suffix == ".json":
            found = scan_texts(json_strings(json.loads(path.read_text(encoding="utf-8"))))
            findings += [LeakFinding(path.name, None, e, n, ex) for e, (n, ex) in found.items()]
        else:
            lines = path.read_text(encoding="utf-8").splitlines()
            findings += [LeakFinding(path.name, None, e, n, ex) for e, (n, ex) in scan_texts(lines).items()]
    return findings
