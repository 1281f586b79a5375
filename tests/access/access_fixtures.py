"""Data of the small hand-made lake for the role-view tests (built once per session in a tmp dir).

Streets: A = 定海路街道 (310110001000), B = 平凉路街道 (310110006000).

dim_elder (active unless said otherwise)
  E01 张三丰 A 80-84  mobile 13812341234  ID 310110194805121234  (the row whose masked values are checked)
  E02 李四   A 80-84  landline 021-65435678
  E03..E05   A 80-84                          -> A x 80-84 = 5 elders (shown to leadership)
  E06, E07   A 75-79                          -> A x 75-79 = 2 (NULL for leadership)
  E08..E11   B 60-64                          -> B x 60-64 = 4 (NULL)
  E12        B 90-94 deceased                 -> not counted (status filter)

Warehouse views exist for the tables written here; every other contract table has no
view, so role connections build it as an empty typed relation.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import polars as pl

from rainbow.parquet import parquet_from, register_sources, write_frame
from rainbow.settings import Lake
from rainbow.warehouse import connect_warehouse, publish_views
from schemas import load_registry
from schemas.contract import Column

A = "310110001000"
B = "310110006000"
HASH = bytes(range(100, 132))
PSEUDO = bytes(range(32))

_TYPES: dict[str, Any] = {
    "string": pl.String,
    "integer": pl.Int64,
    "decimal": pl.Float64,
    "date": pl.Date,
    "timestamp": pl.Datetime("us"),
    "boolean": pl.Boolean,
}


def frame(
    columns: list[Column], rows: list[dict[str, Any]], extra: dict[str, Any] | None = None
) -> pl.DataFrame:
    """Rows of a contract table (undeclared keys are an error; missing columns are NULL)."""
    names = {c.name for c in columns} | set(extra or {})
    for r in rows:
        unknown = set(r) - names
        assert not unknown, unknown
    schema = {c.name: _TYPES[c.type] for c in columns} | (extra or {})
    return pl.DataFrame([{n: r.get(n) for n in schema} for r in rows], schema=schema, orient="row")


def _elder(n: int, street: str | None, age: int, band: str, **kw: Any) -> dict[str, Any]:
    birth = date(2026 - age, 3, n)
    return {
        "elder_key": f"E{n:08d}",
        "name": kw.pop("name", f"王{n}号"),
        "sex": "1" if n % 2 else "2",
        "birth_date": birth,
        "age": age,
        "age_band": band,
        "id_number": f"310110{birth:%Y%m%d}{n:03d}X",
        "phone": kw.pop("phone", f"139{n:08d}"),
        "residence_address": f"上海市杨浦区测试路{n}弄{n}号{n}01室",
        "street": street,
        "committee": "测试一村居委会",
        "living_arrangement": "ALONE" if n % 3 == 0 else "SPOUSE",
        "status": kw.pop("status", "ACTIVE"),
        "care_level": str(n % 4),
        "senior_card_no": f"SC{n:08d}",
        "in_municipal_registry": True,
        "first_seen": date(2026, 1, 1),
        **kw,
    }


ELDERS = [
    _elder(
        1,
        A,
        82,
        "80-84",
        name="张三丰",
        phone="13812341234",
        id_number="310110194805121234",
        birth_date=date(1948, 5, 12),
        residence_address="上海市杨浦区控江路1000弄1号101室",
    ),
    _elder(2, A, 81, "80-84", name="李四", phone="021-65435678"),
    _elder(3, A, 83, "80-84"),
    _elder(4, A, 84, "80-84"),
    _elder(5, A, 80, "80-84"),
    _elder(6, A, 77, "75-79"),
    _elder(7, A, 76, "75-79"),
    _elder(8, B, 61, "60-64"),
    _elder(9, B, 62, "60-64"),
    _elder(10, B, 63, "60-64"),
    _elder(11, B, 64, "60-64"),
    _elder(12, B, 91, "90-94", status="DECEASED", death_date=date(2026, 10, 15)),
]


def _services() -> list[dict[str, Any]]:
    out = []
    for i, e in enumerate(ELDERS[:11]):
        for day in (3, 17):
            out.append(
                {
                    "service_event_id": f"S{i:03d}{day}",
                    "elder_key": e["elder_key"],
                    "programme": "MEAL_AID",
                    "service_date": date(2026, 11, day),
                    "started_at": datetime(2026, 11, day, 11, 30),
                    "provider_id": "P001",
                    "amount": 15.0,
                    "subsidy": 5.0,
                    "street": e["street"],
                    "source_table": "meal_transactions",
                    "record_id": f"R{i}{day}",
                }
            )
    return out


TABLES: dict[tuple[str, str], list[dict[str, Any]]] = {
    ("library", "dim_elder"): ELDERS,
    ("library", "fact_service_event"): _services(),
    ("library", "elder_life_events"): [
        {"elder_key": "E00000012", "event_type": "DEATH", "event_date": date(2026, 10, 15), "detail": "死亡"},
        {"elder_key": "E00000001", "event_type": "MOVE", "event_date": date(2026, 9, 1), "detail": "迁入"},
    ],
    ("library", "dim_facility"): [
        {"facility_id": "F1", "facility_name": "定海路长者照护之家", "street": A, "phone": "021-65001234"},
        {"facility_id": "F2", "facility_name": "平凉路助餐点", "street": B, "phone": "021-65005678"},
    ],
    ("library", "dim_volunteer"): [
        {"volunteer_id": "V1", "name": "张华", "phone": "13900001111", "street": A},
        {"volunteer_id": "V2", "name": "钱志愿", "phone": "13900002222", "street": B},
    ],
    ("library", "elder_devices"): [
        {
            "device_kind": "WRISTBAND",
            "device_id": "D1",
            "elder_key": "E00000001",
            "street": A,
            "fence_lat": 31.27,
            "fence_lon": 121.52,
        },
    ],
    ("library", "fact_screening"): [
        {
            "screening_id": "SC1",
            "elder_key": "E00000001",
            "screening_date": date(2026, 6, 10),
            "instrument": "AD8",
            "score": 1,
            "result": "NORMAL",
        },
    ],
    ("marts", "kpi_values"): [
        {
            "kpi_id": "wristband_high_age_elders",
            "level": "street",
            "area_code": A,
            "street": A,
            "month": date(2026, 11, 1),
            "value": 3.0,
            "value_text": "3",
            "unit": "人",
        },
        {
            "kpi_id": "wristband_high_age_elders",
            "level": "street",
            "area_code": B,
            "street": B,
            "month": date(2026, 11, 1),
            "value": 12.0,
            "value_text": "12",
            "unit": "人",
        },
        {
            "kpi_id": "cognitive_screening_coverage",
            "level": "street",
            "area_code": A,
            "street": A,
            "month": date(2026, 11, 1),
            "value": 2.5,
            "value_text": "2.5%",
            "unit": "%",
        },
    ],
}
STAGED_EXTRA = {"_source_file": pl.String}


@dataclass(frozen=True)
class AccessLake:
    lake: Lake
    views: set[tuple[str, str]]  # (zone, table) the warehouse has a view for


def build_lake(root: Path) -> AccessLake:
    from masking.pseudonym import pseudonym

    registry = load_registry()
    lake = Lake(root)
    root.mkdir(parents=True, exist_ok=True)
    con = connect_warehouse(lake)
    written: set[tuple[str, str]] = set()
    tables = dict(TABLES)
    tables[("marts", "elder_portrait")] = [
        {
            "elder_pseudonym": pseudonym(e["elder_key"], PSEUDO),
            "sex": e["sex"],
            "age_band": e["age_band"],
            "street": e["street"],
            "care_level": e["care_level"],
            "as_of": date(2026, 11, 28),
        }
        for e in ELDERS
    ]
    for (zone, name), rows in tables.items():
        cols = list(registry.derived(name).columns)
        path = lake.zone(zone) / name / "data.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_frame(frame(cols, rows), path, lake)  # library: encrypted at rest, marts plain
        view = f"CREATE VIEW {zone}.\"{name}\" AS SELECT * FROM {parquet_from(path)}"
        register_sources(con, lake, view)
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {zone}")
        con.execute(view)
        written.add((zone, name))
    # one staged table, with a lineage column the contract does not declare
    reg_cols = list(registry.table("district_registry").columns)
    path = lake.staged / "district_registry" / "part-0.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    registry_rows = frame(
        reg_cols,
        [{"name": "孙小美", "phone": "13700001234", "street": A, "_source_file": "registry_a.xlsx"}],
        STAGED_EXTRA,
    )
    write_frame(registry_rows, path, lake)
    view = f"CREATE VIEW staged.district_registry AS SELECT * FROM {parquet_from(path)}"
    register_sources(con, lake, view)
    con.execute("CREATE SCHEMA staged")
    con.execute(view)
    written.add(("staged", "district_registry"))
    # a file outside every role's zones, and a secret-looking file, for the sandbox tests
    (lake.root / "raw").mkdir()
    pl.DataFrame({"x": [1]}).write_parquet(lake.raw / "probe.parquet")
    publish_views(con, lake)  # what every pipeline write does: role connections read this DDL
    con.close()
    return AccessLake(lake, written)
