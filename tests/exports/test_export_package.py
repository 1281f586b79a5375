"""Export packages built from the session's sample library (3,000 elders x 35 days)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import polars as pl
import pytest

import masking.export as export
from masking.agreement import AgreementError, load_agreement
from masking.audit import AuditLog
from masking.export import LeakError, PackagePath, build_package, verify_manifest
from masking.leak_gate import DIRECT_ENTITIES
from masking.scrub import find_pii, find_pii_many
from rainbow.settings import Lake
from tests.exports.export_helpers import (
    AGREEMENTS,
    CREATED,
    MASTER_KEY,
    SCREENINGS,
    SERVICE_AGGREGATE,
    SERVICE_EVENTS,
    TODAY,
    least,
    make_agreement,
)
from tests.lakefiles import read_parquet

BOM = b"\xef\xbb\xbf"
PLANTED_ID = "11010519491231002X"  # GB 11643 example number, checksum-valid


def build(lake: Lake, *datasets: dict, recipient: str = "uni_a", created: datetime = CREATED) -> PackagePath:
    agreement = make_agreement(*datasets, recipient={"id": recipient, "name_zh": f"接收方{recipient}"})
    return build_package(lake, agreement, TODAY, created_at=created, master_key=MASTER_KEY, actor="tester")


@pytest.fixture()
def package(export_lake: Lake) -> PackagePath:
    return build(export_lake, SERVICE_EVENTS, SERVICE_AGGREGATE, SCREENINGS)


def test_package_files_bom_manifest_and_dictionary(package: PackagePath) -> None:
    names = sorted(p.name for p in package.path.iterdir())
    assert names == sorted(
        [
            *(
                f"{stem}.{ext}"
                for stem in ("service_events", "service_use", "screenings")
                for ext in ("parquet", "csv")
            ),
            "data_dictionary.csv",
            "data_dictionary.md",
            "risk_report.json",
            "risk_report.md",
            "manifest.json",
        ]
    )
    assert package.path == package.path.parent.parent / "uni_a" / package.package_id
    for csv in package.path.glob("*.csv"):
        assert csv.read_bytes().startswith(BOM), csv.name
    manifest = json.loads((package.path / "manifest.json").read_text(encoding="utf-8"))
    assert {f["path"] for f in manifest["files"]} == set(names) - {"manifest.json"}
    assert all(len(f["sha256"]) == 64 and f["bytes"] > 0 for f in manifest["files"])
    assert verify_manifest(package.path) == []
    assert manifest["agreement_id"] == "TEST-2026-001" and manifest["recipient"]["id"] == "uni_a"
    assert manifest["created_at"] == CREATED.isoformat()
    for stem, meta in manifest["datasets"].items():
        assert read_parquet(package.path / f"{stem}.parquet").height == meta["rows"]
        assert pl.read_csv(package.path / f"{stem}.csv", infer_schema=False).height == meta["rows"]
    (package.path / "screenings.csv").write_bytes(b"tampered")
    assert verify_manifest(package.path) == ["screenings.csv"]


def test_dictionary_is_bilingual_and_names_generalisation(package: PackagePath) -> None:
    dictionary = pl.read_csv(package.path / "data_dictionary.csv", infer_schema=False)
    assert dictionary.columns[:4] == ["dataset", "column", "name_zh", "name_en"]
    for stem in ("service_events", "service_use", "screenings"):
        released = read_parquet(package.path / f"{stem}.parquet").columns
        assert dictionary.filter(pl.col("dataset") == stem).get_column("column").to_list() == released
    assert dictionary.select(pl.col("name_zh", "name_en").is_null().any()).row(0) == (False, False)
    row = dictionary.filter(
        (pl.col("dataset") == "service_events") & (pl.col("column") == "service_date")
    ).row(0, named=True)
    assert row["name_zh"] == "服务日期" and row["name_en"] == "service date" and "->" in row["generalisation"]
    md = (package.path / "data_dictionary.md").read_text(encoding="utf-8")
    assert "数据字典 / Data dictionary" in md and "养老服务事件 / Service events" in md


def test_direct_identifiers_never_leave(package: PackagePath) -> None:
    events = read_parquet(package.path / "service_events.parquet")
    assert "elder_key" not in events.columns and "elder_pseudonym" in events.columns
    assert not events.get_column("elder_pseudonym").str.contains(r"^E\d+$").any()
    screenings = read_parquet(package.path / "screenings.parquet")
    assert {"name", "id_number", "screener_name"}.isdisjoint(screenings.columns)
    assert screenings.get_column("id_number_pseudonym").str.contains(r"^[a-z]{20}$").all()


def test_k_achieved_recomputed_from_the_written_file(package: PackagePath) -> None:
    report = json.loads((package.path / "risk_report.json").read_text(encoding="utf-8"))
    for stem, person in (("service_events", "elder_pseudonym"), ("screenings", "id_number_pseudonym")):
        meta = report["datasets"][stem]
        qis = [q["column"] for q in meta["quasi_identifiers"]]
        assert set(qis) >= ({"service_date", "street", "sex", "age"} if stem == "service_events" else {"sex"})
        released = read_parquet(package.path / f"{stem}.parquet")
        sizes = released.group_by(qis).agg(pl.col(person).n_unique().alias("f")).get_column("f")
        assert least(sizes.min()) >= 5
        assert meta["risk"]["k_achieved"] == least(sizes.min())
        assert meta["risk"]["equivalence_classes"] == sizes.len()
        assert meta["risk"]["records_suppressed"] <= 0.05 * meta["risk"]["records_in"]
        assert meta["risk"]["prosecutor_risk"]["highest"] == pytest.approx(1 / least(sizes.min()), abs=1e-6)
    events = report["datasets"]["service_events"]
    assert {q["column"]: q["min_level"] for q in events["quasi_identifiers"]}["service_date"] == "date"
    md = (package.path / "risk_report.md").read_text(encoding="utf-8")
    for text in (
        "k achieved",
        "Records suppressed",
        "Prosecutor risk",
        "Journalist risk",
        "Marketer risk",
        "Smallest class",
        "准标识符与泛化",
    ):
        assert text in md


def test_aggregate_cells_under_k_are_null(package: PackagePath) -> None:
    cells = read_parquet(package.path / "service_use.parquet")
    assert cells.columns == [
        "street",
        "sex",
        "age_band",
        "programme",
        "elders",
        "events",
        "amount_total",
        "suppressed",
        "suppression",
    ]
    suppressed = cells.filter(pl.col("suppressed"))
    assert suppressed.height > 0
    assert suppressed.select(pl.col("elders", "events", "amount_total").is_null().all()).row(0) == (True,) * 3
    assert set(suppressed.get_column("suppression").unique()) <= {"primary", "complementary"}
    assert least(cells.filter(~pl.col("suppressed")).get_column("elders").min()) >= 5
    csv = pl.read_csv(package.path / "service_use.csv", infer_schema=False)
    assert csv.filter(pl.col("suppressed") == "true").get_column("elders").is_null().all()


def test_journalist_risk_uses_dim_elder_as_population(export_lake: Lake) -> None:
    persons = {
        "name": "fact_service_event",
        "output": "users",
        "columns": ["elder_key", "street"],
        "elder_attributes": ["sex", "age_band"],
        "date_column": "service_date",
    }
    package = build(export_lake, persons)
    risk = json.loads((package.path / "risk_report.json").read_text(encoding="utf-8"))["datasets"]["users"][
        "risk"
    ]
    assert "dim_elder" in risk["population"]
    assert risk["journalist_risk"]["highest"] <= risk["prosecutor_risk"]["highest"]
    assert risk["marketer_risk"] <= risk["prosecutor_risk"]["average"]


def test_pseudonyms_differ_across_recipients_and_are_stable_within_one(export_lake: Lake) -> None:
    a1 = build(export_lake, SERVICE_EVENTS, recipient="uni_a")
    a2 = build(export_lake, SERVICE_EVENTS, recipient="uni_a", created=datetime(2026, 12, 11, 8, 0))
    b = build(export_lake, SERVICE_EVENTS, recipient="uni_b")

    def keys(p: PackagePath) -> set[str]:
        return set(read_parquet(p.path / "service_events.parquet").get_column("elder_pseudonym").drop_nulls())

    assert len(keys(a1)) > 100
    assert keys(a1) == keys(a2)
    assert keys(a1).isdisjoint(keys(b))
    ev_a = read_parquet(a1.path / "service_events.parquet")
    ev_b = read_parquet(b.path / "service_events.parquet")
    assert ev_a.join(ev_b, on="elder_pseudonym").height == 0
    # same lake, key, agreement and created_at: byte-identical package
    again = build(export_lake, SERVICE_EVENTS, recipient="uni_a")
    assert again.manifest["files"] == a1.manifest["files"]


def test_free_text_is_scrubbed(export_lake: Lake, export_source: Lake) -> None:
    staged = read_parquet(export_source.staged / "screenings" / "**" / "*.parquet")
    notes = staged.get_column("notes").drop_nulls().to_list()
    assert any(find_pii_many(notes)), "the sample should plant personal data in screening notes"
    package = build(export_lake, SCREENINGS)
    released = read_parquet(package.path / "screenings.parquet").get_column("notes").drop_nulls().to_list()
    assert released and not any(find_pii_many(released))
    assert any("<手机号>" in n or "<姓名>" in n for n in released)


def _plant(monkeypatch: pytest.MonkeyPatch, table: str, column: str, value: str) -> None:
    real = export.read_table

    def planted(lake: Lake, zone: str, contract, columns):  # type: ignore[no-untyped-def]
        frame = real(lake, zone, contract, columns)
        if contract.name == table:
            frame = frame.with_columns(
                pl.when(pl.int_range(pl.len()) == 3)
                .then(pl.lit(value))
                .otherwise(pl.col(column))
                .alias(column)
            )
        return frame

    monkeypatch.setattr(export, "read_table", planted)


def test_every_recognized_entity_counts_as_a_direct_identifier() -> None:
    assert {
        "CN_RESIDENT_ID",
        "CN_MOBILE_PHONE",
        "CN_LANDLINE_PHONE",
        "CN_BANK_CARD",
        "CN_SENIOR_CARD",
        "PERSON",
        "CN_ADDRESS",
    } <= DIRECT_ENTITIES


def test_leak_gate_refuses_a_planted_resident_id_and_leaves_nothing(
    export_lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert find_pii(PLANTED_ID)
    _plant(monkeypatch, "fact_service_event", "programme", f"MEAL_AID {PLANTED_ID}")
    with pytest.raises(LeakError) as exc:
        build(export_lake, SERVICE_EVENTS)
    assert any(f.entity == "CN_RESIDENT_ID" and f.column == "programme" for f in exc.value.findings)
    assert PLANTED_ID not in str(exc.value)  # the message shows a masked example only
    assert not (export_lake.exports / "uni_a").exists()
    assert not export_lake.exports.exists() or not any(export_lake.exports.iterdir())
    log = AuditLog(export_lake).read()
    assert log.filter(pl.col("action") == "export").get_column("outcome").to_list() == ["refused"]


def test_leak_gate_allows_facility_contacts_but_not_a_mobile(
    export_lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    agreement = load_agreement(AGREEMENTS / "facility_map_open.yaml")
    package = build_package(export_lake, agreement, TODAY, created_at=CREATED, master_key=MASTER_KEY)
    facilities = read_parquet(package.path / "dim_facility.parquet")
    assert facilities.height > 0 and facilities.get_column("address").str.contains("号").all()
    assert package.manifest["datasets"]["dim_facility"]["rows"] == facilities.height
    _plant(monkeypatch, "dim_facility", "address", "上海市杨浦区某路1号 联系 13912345678")
    with pytest.raises(LeakError) as exc:
        build_package(export_lake, agreement, TODAY, created_at=datetime(2026, 12, 12), master_key=MASTER_KEY)
    assert {f.entity for f in exc.value.findings} == {"CN_MOBILE_PHONE"}
    assert sorted(p.name for p in (export_lake.exports / "shanghai_open_data").iterdir()) == [
        package.package_id
    ]


def test_refused_agreement_writes_nothing_and_is_audited(export_lake: Lake) -> None:
    with pytest.raises(AgreementError):
        build_package(export_lake, AGREEMENTS / "expired_example.yaml", TODAY, actor="tester")
    with pytest.raises(AgreementError, match="NON_OPEN"):
        build(export_lake, {"name": "dim_elder", "columns": ["sex", "age"]})
    assert not export_lake.exports.exists()
    log = AuditLog(export_lake).read()
    assert log.get_column("outcome").to_list() == ["refused", "refused"]
    assert log.get_column("datasets").to_list() == ["fact_service_event", "dim_elder"]
    assert "expired" in log.get_column("detail")[0]


def test_written_package_is_audited_per_dataset(package: PackagePath, export_lake: Lake) -> None:
    log = AuditLog(export_lake).read().filter(pl.col("action") == "export")
    assert log.get_column("outcome").unique().to_list() == ["ok"]
    assert dict(zip(log["datasets"], log["row_count"], strict=True)) == package.rows
    assert set(log.get_column("user_id")) == {"tester"}
    assert all(package.package_id == s for s in log.get_column("statement"))


def test_no_temporary_directories_remain(package: PackagePath) -> None:
    leftovers = [p for p in Path(package.path).parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []
