"""Elder portraits on the hand-made library: golden values, evidence, scenarios, no identifiers."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from assets.marts.common import mart_path, register_parameters
from assets.marts.portraits import (
    PORTRAIT,
    PORTRAIT_COLUMNS,
    RISK_TAG_COLUMNS,
    RISK_TAGS,
    SCENARIO_COLUMNS,
    build_portraits,
    compute_portraits,
    elder_portrait_sql,
    elder_risk_tags_sql,
    elder_scenarios_sql,
)
from assets.marts.portraits import SCENARIOS as SCENARIO_TABLE
from assets.marts.rules import PortraitRules, load_rules
from assets.marts.scenarios import Scenario, load_scenarios
from masking.pseudonym import pseudonym
from schemas import load_registry
from tests.lakefiles import read_parquet
from tests.marts.conftest import AS_OF, ELDERS, TEST_KEY, Fixture

# elder -> (segment, reason, health signals, risk tags, cognitive status, core complete)
GOLDEN: dict[str, tuple[str | None, str | None, str | None, str | None, str, bool]] = {
    "E01": ("VITAL", "无介护、介助情形", None, "ALONE_80_NO_MEAL", "NORMAL", True),
    "E02": ("VITAL", "无介护、介助情形", None, "ALONE_80_UNMONITORED", "NOT_SCREENED", True),
    "E03": ("ASSISTED", "85岁以上且有健康风险信号", "HIGH_BP", "WRISTBAND_SILENT", "NOT_SCREENED", True),
    "E04": ("CARE", "照护等级四至六级", None, "LTCI_UNDERSERVED", "NORMAL", True),
    "E05": ("ASSISTED", "照护等级一至三级", "LOW_ACTIVITY", None, "NOT_SCREENED", True),
    "E06": ("ASSISTED", "疑似认知障碍", None, "SCREEN_POSITIVE_NO_RESCREEN", "SUSPECTED", True),
    "E07": ("ASSISTED", "疑似认知障碍", None, None, "SUSPECTED", True),
    "E08": ("CARE", "照护等级四至六级", None, "CARE_LEVEL_EXPIRED", "NOT_SCREENED", True),
    "E09": ("CARE", "入住养老机构", None, None, "NOT_SCREENED", True),
    "E10": ("VITAL", "无介护、介助情形", "LOW_SPO2", "LOW_SPO2_7D", "NOT_SCREENED", True),
    "E11": (None, None, None, None, "NORMAL", True),  # deceased: no segment, no tags
    "E12": ("VITAL", "无介护、介助情形", None, None, "NORMAL", False),
}

EVIDENCE = {
    ("E01", "ALONE_80_NO_MEAL"): "80岁以上独居（80-84岁），近30天无助餐记录",
    ("E02", "ALONE_80_UNMONITORED"): "80岁以上独居（85-89岁），未配备在用的智能腕表或智能水表",
    ("E03", "WRISTBAND_SILENT"): "已配备智能腕表，近7天无体征数据（最近一次：2026-11-10）",
    ("E04", "LTCI_UNDERSERVED"): "长护险照护5级，应每周7次（近4周应28次），实际8次",
    ("E06", "SCREEN_POSITIVE_NO_RESCREEN"): "2026-10-01 AD8筛查疑似认知障碍，已58天未复筛",
    ("E08", "CARE_LEVEL_EXPIRED"): "照护4级评估已于2026-09-30到期，需复评",
    ("E10", "LOW_SPO2_7D"): "近7天最低血氧88%（低于90%）",
}

# elder -> column -> value (windows end on 2026-11-28 and include it)
VALUES: dict[str, dict[str, Any]] = {
    "E01": {
        "meal_aid_30d": 0,
        "meal_aid_90d": 1,
        "love_milk_30d": 1,
        "love_milk_90d": 2,
        "has_water_meter": True,
        "days_since_screening": 180,
        "screening_current": True,
        "last_screening_instrument": "MMSE",
    },
    "E02": {
        "meal_aid_30d": 4,
        "meal_aid_90d": 4,
        "meal_aid_365d": 4,
        "love_milk_90d": 1,
        "has_wristband": False,
    },
    "E03": {
        "has_wristband": True,
        "vitals_days_30d": 10,
        "systolic_mean_30d": 150.0,
        "heart_rate_mean_30d": 72.0,
        "steps_mean_30d": 3000.0,
        "last_vitals_date": "2026-11-10",
        "health_signal_count": 1,
    },
    "E04": {
        "ltci_home_care_30d": 9,
        "ltci_home_care_90d": 18,
        "ltci_visits_28d": 8,
        "ltci_entitled_28d": 28,
        "ltci_visits_per_week": 7,
        "device_rental_90d": 1,
        "family_care_bed_30d": 1,
        "care_level_valid": True,
        "screening_current": False,
        "days_since_screening": 378,
    },
    "E05": {
        "ltci_visits_28d": 12,
        "ltci_entitled_28d": 12,
        "ltci_visits_per_week": 3,
        "ltci_home_care_90d": 25,
        "meal_aid_30d": 0,
        "meal_aid_90d": 2,
        "vitals_days_30d": 9,
        "steps_mean_30d": 500.0,
    },
    "E07": {
        "last_screening_instrument": "MOCA",
        "days_since_screening": 25,
        "has_water_meter": True,
        "time_bank_30d": 1,
    },
    "E08": {
        "care_level": "4",
        "care_level_valid": False,
        "ltci_entitled_28d": None,
        "ltci_home_care_90d": 1,
        "device_rental_90d": 1,
    },
    "E09": {"has_wristband": False, "love_milk_30d": 1, "ltci_visits_per_week": None},
    "E10": {"spo2_min_30d": 88, "vitals_days_30d": 14, "meal_aid_30d": 1, "has_wristband": True},
    "E12": {"street": None, "missing_core": "street,living_arrangement", "meal_aid_30d": 1},
}

CATALOGUE: list[Scenario] = [
    Scenario.targeting("SC1", "高龄活力关爱", ["80+"], ["VITAL"]),
    Scenario.targeting("SC2", "介护照护", ["60+"], ["CARE"]),
    Scenario.targeting("SC3", "低龄互助", ["60-69"], ["VITAL", "ASSISTED"]),
    Scenario.targeting("SC4", "全体老人驾驶舱", ["60+"], ["VITAL", "ASSISTED", "CARE"]),
]
RECOMMENDED = {
    "E01": "SC1",
    "E02": "SC1",
    "E10": "SC1",
    "E04": "SC2",
    "E08": "SC2",
    "E09": "SC2",
    "E06": "SC3",
    "E12": "SC3",
}


@pytest.fixture()
def computed(mart_lake: Fixture) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    return compute_portraits(mart_lake.con, scenarios=CATALOGUE)


def _by_elder(frame: pl.DataFrame) -> dict[str, dict[str, Any]]:
    return {r["elder_key"]: r for r in frame.to_dicts()}


def test_portraits_match_hand_computed_values(
    computed: tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame],
) -> None:
    portraits, _, _ = computed
    rows = _by_elder(portraits)
    assert set(rows) == set(GOLDEN)  # one portrait per elder
    assert set(portraits["as_of"]) == {AS_OF}  # the latest service date, not today
    for key, (segment, reason, signals, tags, cognition, complete) in GOLDEN.items():
        r = rows[key]
        got = (
            r["vitality_segment"],
            r["segment_reason"],
            r["health_signals"],
            r["risk_tags"],
            r["cognitive_status"],
            r["core_complete"],
        )
        assert got == (segment, reason, signals, tags, cognition, complete), key
    for key, expected in VALUES.items():
        for col, want in expected.items():
            got = rows[key][col]
            got = got.isoformat() if hasattr(got, "isoformat") else got
            assert got == want, (key, col, got)
    assert rows["E04"]["vitality_segment_zh"] == "介护" and rows["E01"]["vitality_segment_zh"] == "活力"


def test_risk_tags_carry_their_evidence(computed: tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]) -> None:
    _, tags, _ = computed
    got = {(r["elder_key"], r["tag"]): r["evidence"] for r in tags.to_dicts()}
    assert got == EVIDENCE
    assert set(tags["severity"]) <= {"high", "medium", "low"}
    assert tags.filter(pl.col("elder_key") == "E11").height == 0


def test_scenarios_recommended_by_target_segment(
    computed: tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame],
) -> None:
    portraits, _, recs = computed
    assert dict(zip(recs["elder_key"], recs["scenario_id"], strict=True)) == RECOMMENDED
    assert recs.height == len(RECOMMENDED)  # SC4 takes in everyone: never recommended
    assert _by_elder(portraits)["E01"]["recommended_scenarios"] == "SC1"


def test_scenario_targets_are_codes_of_the_code_list_and_the_portrait_rules() -> None:
    sc1 = CATALOGUE[0]
    assert sc1.age_bands == {"80-84", "85-89", "90-94", "95-99", "100+"} and sc1.segments == {"VITAL"}
    assert [s.recommendable for s in CATALOGUE] == [True, True, True, False]
    with pytest.raises(ValueError, match="活力"):
        Scenario.targeting("X", "x", ["60+"], ["活力"])  # a Chinese name, not a segment code


def test_the_scenario_catalogue_reads_cleanly() -> None:
    scenarios = load_scenarios()
    assert len(scenarios) > 18
    assert any(s.recommendable for s in scenarios)
    assert not all(s.recommendable for s in scenarios)  # district-wide scenarios are not recommended


def _keyed(frame: pl.DataFrame, columns: list[str], key: list[str]) -> pl.DataFrame:
    return frame.rename({"elder_key": "elder_pseudonym"}).select(columns).sort(key)


def test_the_lineage_sql_returns_what_the_builder_publishes(
    mart_lake: Fixture, computed: tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]
) -> None:
    """The SELECTs the catalogue reads for column lineage (catalog/python_lineage.yaml) are the
    marts as built, but for the pseudonym (elder_key stands for it)."""
    portraits, tags, recs = computed
    registry = load_registry()
    con = mart_lake.con
    register_parameters(con, AS_OF, load_rules())
    cases = [
        (elder_portrait_sql(registry, scenarios=CATALOGUE), portraits, PORTRAIT_COLUMNS, ["elder_pseudonym"]),
        (elder_risk_tags_sql(registry), tags, RISK_TAG_COLUMNS, ["elder_pseudonym", "tag"]),
        (
            elder_scenarios_sql(registry, scenarios=CATALOGUE),
            recs,
            SCENARIO_COLUMNS,
            ["elder_pseudonym", "scenario_id"],
        ),
    ]
    for sql, built, columns, key in cases:
        got = con.sql(sql).pl()
        assert got.columns == columns
        assert_frame_equal(got.sort(key), _keyed(built, columns, key), check_dtypes=False)


def test_build_writes_pseudonymised_marts_without_identifiers(mart_lake: Fixture) -> None:
    stats = build_portraits(mart_lake.lake, mart_lake.con, scenarios=CATALOGUE)
    assert stats["elders"] == 12 and stats["living"] == 11
    assert stats["segments"] == {"ASSISTED": 4, "CARE": 3, "VITAL": 4}
    assert stats["elders_with_risk_tags"] == 7 and stats["recommendations"] == 8
    registry = load_registry()
    for name in (PORTRAIT, RISK_TAGS, SCENARIO_TABLE):
        frame = read_parquet(mart_path(mart_lake.lake, name))
        contract = registry.derived(name)
        assert frame.columns == contract.column_names, name
        assert all(c.pii != "direct_identifier" for c in contract.columns), name
        # no elder key, name, ID number, phone, address, birth date - as columns or as values
        assert not {
            "elder_key",
            "name",
            "id_number",
            "phone",
            "residence_address",
            "birth_date",
            "age",
            "committee",
            "senior_card_no",
            "platform_elder_id",
        } & set(frame.columns)
        text = " ".join(
            str(v) for col in frame.columns if frame[col].dtype == pl.String for v in frame[col].to_list()
        )
        for e in ELDERS:
            for field in ("elder_key", "name", "id_number", "phone", "residence_address"):
                assert str(e[field]) not in text, (name, field)
        for c in contract.columns:
            if not c.nullable:
                assert frame[c.name].null_count() == 0, (name, c.name)
    portrait = read_parquet(mart_path(mart_lake.lake, PORTRAIT))
    # keyed pseudonyms: reproducible only with the key
    assert set(portrait["elder_pseudonym"]) == {pseudonym(e["elder_key"], TEST_KEY) for e in ELDERS}
    assert portrait["elder_pseudonym"].n_unique() == 12
    n = mart_lake.con.sql(
        "SELECT count(*) FROM marts.elder_portrait WHERE vitality_segment = 'CARE'"
    ).fetchall()
    assert n[0][0] == 3


def test_build_is_deterministic_and_pseudonyms_stable(mart_lake: Fixture) -> None:
    build_portraits(mart_lake.lake, mart_lake.con, scenarios=[])
    first = {n: read_parquet(mart_path(mart_lake.lake, n)) for n in (PORTRAIT, RISK_TAGS, SCENARIO_TABLE)}
    build_portraits(mart_lake.lake, mart_lake.con, scenarios=[])
    for n, frame in first.items():
        assert_frame_equal(read_parquet(mart_path(mart_lake.lake, n)), frame)


def test_rules_are_valid_and_first_match_wins(mart_lake: Fixture) -> None:
    rules = load_rules()
    assert [s.code for s in rules.segments] == ["CARE", "ASSISTED", "VITAL"]
    assert rules.ltci_visits_per_week == {"2": 3, "3": 3, "4": 5, "5": 7, "6": 7}
    # E04 (level 5) would also match ASSISTED rules if CARE came later; reorder to prove order matters
    flipped = PortraitRules.model_validate(
        {
            **rules.model_dump(),
            "segments": [
                rules.segments[1].model_dump(),
                *[s.model_dump() for s in (rules.segments[0], rules.segments[2])],
            ],
        }
    )
    portraits, _, _ = compute_portraits(mart_lake.con, rules=flipped)
    assert _by_elder(portraits)["E07"]["vitality_segment"] == "ASSISTED"
    assert _by_elder(portraits)["E09"]["vitality_segment"] == "CARE"
    with pytest.raises(ValueError, match="catch-all"):
        PortraitRules.model_validate({**rules.model_dump(), "segments": [rules.segments[0].model_dump()]})
