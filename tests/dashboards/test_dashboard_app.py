"""The app with Streamlit's AppTest: login, each role's pages, each page's figures against the
lake, and the two write actions (alert lifecycle, steward decisions)."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from streamlit.testing.v1 import AppTest

from assets.library.mei import read_decisions
from assets.marts.alert_lifecycle import CLOSED, alert_states, current_alerts
from dashboards.access import Session, set_connector
from dashboards.common import ELDER_CSS, SESSION_KEY
from dashboards.navigation import PAGES, pages_for
from masking.audit import AuditLog
from rainbow.settings import Lake
from rainbow.warehouse import open_reader
from tests.dashboards.support import (
    APP,
    PASSWORD,
    STAFF_STREET,
    USERS,
    app_as,
    metrics,
    staff_marts_connector,
    texts,
)

SCREENS = Path(APP).parent / "screens"


def screen(module: str) -> str:
    return str(SCREENS / f"{module}.py")


def login(at: AppTest, username: str, password: str) -> AppTest:
    at.text_input(key="login_username").input(username)
    at.text_input(key="login_password").input(password)
    return at.button[0].click().run()


def reader_rows(lake: Lake, sql: str) -> list[tuple[Any, ...]]:
    return open_reader(lake).sql(sql).fetchall()


# --------------------------------------------------------------------------- login


def test_logged_out_users_see_only_the_chinese_login_form(lake: Lake) -> None:
    at = app_as(None)
    assert at.title[0].value == "彩虹桥 养老数据湖"
    assert at.subheader[0].value == "用户登录"
    assert [t.label for t in at.text_input] == ["用户名", "密码"]
    assert at.button[0].label == "登录"
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        at.switch_page(screen("kpi"))  # no page file is reachable before login


def test_a_wrong_password_is_refused_and_audited(lake: Lake) -> None:
    at = login(app_as(None), "steward", "not-the-password")
    assert "用户名或密码错误" in at.error[0].value
    assert SESSION_KEY not in at.session_state
    last = AuditLog(lake).read("steward").tail(1)
    assert last["outcome"].item() == "refused" and last["datasets"].item() == "dashboard:login"


def test_a_correct_password_logs_in_to_the_kpi_board(lake: Lake) -> None:
    at = login(app_as(None), "staff_013", PASSWORD)
    assert not at.exception
    session = at.session_state[SESSION_KEY]
    assert (session.username, session.role, session.street) == ("staff_013", "street_staff", STAFF_STREET)
    assert at.title[0].value == "指标看板"
    assert "长白新村街道" in " ".join(m.value for m in at.sidebar.markdown)
    last = AuditLog(lake).read("staff_013").filter(pl.col("datasets") == "dashboard:login").tail(1)
    assert last["outcome"].item() == "ok"


def test_logout_returns_to_the_login_form(lake: Lake) -> None:
    at = app_as("steward")
    at.sidebar.button(key="logout").click().run()
    assert SESSION_KEY not in at.session_state
    assert at.subheader[0].value == "用户登录"


@pytest.mark.parametrize("username", [u for u, _, _ in USERS])
def test_each_role_reaches_exactly_its_pages(lake: Lake, username: str) -> None:
    role = next(r for u, r, _ in USERS if u == username)
    allowed = {p.module for p in pages_for(role)}
    at = app_as(username)
    for page in PAGES:
        if page.module in allowed:
            at.switch_page(screen(page.module)).run()
            assert not at.exception, (page.module, [e.value for e in at.exception])
            assert at.title[0].value == page.title or page.module == "home"
        else:
            with pytest.raises(ValueError):
                at.switch_page(screen(page.module))


def test_a_page_guards_itself_without_the_navigation(lake: Lake) -> None:
    at = AppTest.from_file(screen("review"), default_timeout=60).run()
    assert "请先登录" in at.warning[0].value and not at.dataframe
    at = AppTest.from_file(screen("review"), default_timeout=60)
    at.session_state[SESSION_KEY] = Session("leader", "领导", "leadership")
    at.run()
    assert "无权打开此页面" in at.error[0].value and not at.dataframe


def test_elder_mode_switches_on_large_high_contrast_style(lake: Lake) -> None:
    at = app_as("leader")
    marker = "html { font-size: 20px; }"
    assert marker in ELDER_CSS
    assert all(marker not in str(h.proto.body) for h in at.get("html"))
    at.sidebar.toggle(key="elder_mode").set_value(True).run()
    assert any(marker in str(h.proto.body) for h in at.get("html"))
    assert at.title[0].value == "指标看板"


# --------------------------------------------------------------------------- figures


def test_kpi_board_shows_the_districts_values_and_traffic_lights(lake: Lake) -> None:
    at = app_as("leader")
    month, as_of = reader_rows(lake, "SELECT max(month), max(as_of) FROM marts.kpi_values")[0]
    rows = reader_rows(
        lake,
        f"SELECT kpi_name_zh, value_text, status FROM marts.kpi_values "
        f"WHERE area_code = '310110000000' AND month = DATE '{month}'",
    )
    shown = metrics(at)
    for name, value_text, _ in rows:
        assert shown[name] == value_text
    status = [s for *_, s in rows]
    assert shown[":green[● 达标]"] == f"{status.count('MET')} 项"
    assert shown[":red[● 未达标]"] == f"{status.count('NOT_MET')} 项"
    page = texts(at)
    assert "杨浦区（全区） · 指标达标情况" in page and "各街道 · 实际与目标" in page and "指标趋势" in page
    assert f"数据截止：{as_of}" in page
    matrix = at.dataframe[0].value
    assert len(matrix) == 12 and "街道" in matrix.columns
    assert at.get("vega_lite_chart")  # the trend


def test_street_page_counts_the_streets_elders(lake: Lake) -> None:
    at = app_as("steward")
    at.switch_page(screen("street")).run()
    at.selectbox(key="street_pick").set_value(STAFF_STREET).run()
    (elders,) = reader_rows(
        lake,
        f"SELECT count(*) FROM marts.elder_portrait WHERE status = 'ACTIVE' AND street = '{STAFF_STREET}'",
    )[0]
    assert metrics(at)["老人数"] == f"{elders:,} 人"
    assert at.header[0].value == "长白新村街道"
    facilities = at.dataframe[-1].value
    (n_fac,) = reader_rows(
        lake, f"SELECT count(*) FROM library.dim_facility WHERE street = '{STAFF_STREET}'"
    )[0]
    assert len(facilities) == n_fac


def test_street_staff_get_their_own_street_without_a_choice(lake: Lake) -> None:
    at = app_as("staff_013")
    at.switch_page(screen("street")).run()
    assert not at.selectbox and at.header[0].value == "长白新村街道"
    (elders,) = reader_rows(
        lake, f"SELECT count(*) FROM library.dim_elder WHERE status = 'ACTIVE' AND street = '{STAFF_STREET}'"
    )[0]
    assert metrics(at)["老人数"] == f"{elders:,} 人"


def test_portraits_show_segments_and_an_individual_portrait(lake: Lake) -> None:
    at = app_as("steward")
    at.switch_page(screen("portraits")).run()
    counts = dict(
        reader_rows(
            lake,
            "SELECT vitality_segment_zh, count(*) FROM marts.elder_portrait "
            "WHERE status = 'ACTIVE' AND vitality_segment IS NOT NULL GROUP BY 1",
        )
    )
    shown = metrics(at)
    for segment, n in counts.items():
        assert shown[f"{segment}老人"] == f"{n:,} 人"
    key = at.selectbox(key="pt_key").value
    table = at.dataframe[1].value  # the portrait's fields
    assert "老人分类" in list(table["项目"])
    (segment,) = reader_rows(
        lake, f"SELECT vitality_segment_zh FROM marts.elder_portrait WHERE elder_pseudonym = '{key}'"
    )[0]
    assert dict(zip(table["项目"], table["内容"], strict=True))["老人分类"] == str(segment)
    # names only for stewards
    at.text_input(key="pt_name").input("王").run()
    assert "按姓名查找（仅数据管理员）" in texts(at) and not at.warning
    found = at.dataframe[-1].value
    assert len(found) and all("王" in name for name in found["name"])


def test_analysts_see_segments_but_no_individual_portrait(lake: Lake) -> None:
    at = app_as("analyst")
    at.switch_page(screen("portraits")).run()
    assert "老人分类分布" in texts(at)
    assert "个人画像" not in texts(at) and not at.selectbox


def test_leadership_portraits_fall_back_to_suppressed_aggregates(lake: Lake) -> None:
    at = app_as("leader")
    at.switch_page(screen("portraits")).run()
    assert "以下为汇总数据（不足 5 人的分组及可由合计反推出其人数的分组不显示）" in texts(at)
    assert "个人画像" not in texts(at)


def test_alerts_page_counts_open_alerts_by_street_and_age(lake: Lake) -> None:
    at = app_as("steward")
    at.switch_page(screen("alerts")).run()
    current = current_alerts(lake)
    open_alerts = current.filter(pl.col("state") != CLOSED)
    assert metrics(at)["未关闭告警"] == f"{open_alerts.height} 条"
    assert "未关闭告警 · 按街道与时长" in texts(at)
    listed = at.dataframe[1].value
    assert len(listed) == open_alerts.height


def test_acknowledge_then_close_an_alert_as_the_logged_in_user(writable_lake: Lake) -> None:
    at = app_as("steward")
    at.switch_page(screen("alerts")).run()
    alert_id = at.selectbox(key="alerts_pick").value
    at.text_input(key="alerts_note").input("已电话联系家属")
    at.button(key="alerts_ack").click().run()
    assert f"告警 {alert_id} 已已确认" not in texts(at)
    assert f"告警 {alert_id} 已确认" in texts(at)
    state = alert_states(writable_lake).filter(pl.col("alert_id") == alert_id).row(0, named=True)
    assert (state["state"], state["acknowledged_by"], state["acknowledged_note"]) == (
        "ACKNOWLEDGED",
        "steward",
        "已电话联系家属",
    )
    at.selectbox(key="alerts_pick").set_value(alert_id).run()
    at.button(key="alerts_close").click().run()
    assert alert_states(writable_lake).filter(pl.col("alert_id") == alert_id)["state"].item() == "CLOSED"
    assert f"告警 {alert_id} 已关闭" in texts(at)


def test_street_staff_alerts_follow_the_policy(lake: Lake) -> None:
    at = app_as("staff_013")
    at.switch_page(screen("alerts")).run()
    if at.warning:  # the policy gives street staff no alert view: nothing of any street is shown
        assert "无权查看" in at.warning[0].value and not at.dataframe
    else:
        listed = at.dataframe[1].value
        assert set(listed["街道"]) <= {"长白新村街道"}


def test_map_plots_facilities_offline(lake: Lake) -> None:
    at = app_as("steward")
    at.switch_page(screen("map")).run()
    (n,) = reader_rows(
        lake, "SELECT count(*) FROM library.dim_facility WHERE lat IS NOT NULL AND lon IS NOT NULL"
    )[0]
    assert metrics(at)["设施数"] == f"{n} 处"
    spec = at.get("vega_lite_chart")[0].proto.spec
    assert "mercator" in spec and "tile" not in spec.lower()


def test_quality_page_shows_scorecards_health_and_the_report(lake: Lake) -> None:
    at = app_as("leader")
    at.switch_page(screen("quality")).run()
    assert metrics(at)["已检查表"] == "4 张"
    page = texts(at)
    for heading in ("来源系统评分卡", "各表评分卡（最近一批）", "质量趋势（按投递日）", "来源系统健康"):
        assert heading in page
    assert at.get("download_button")


def test_catalogue_search_dataset_page_lineage_and_scenarios(lake: Lake) -> None:
    at = app_as("staff_013")
    at.switch_page(screen("catalog")).run()
    at.text_input(key="cat_query").input("画像").run()
    assert "marts.elder_portrait" in list(at.dataframe[0].value["数据集"])
    at.selectbox(key="cat_dataset").set_value("marts.elder_portrait").run()
    assert at.header[0].value == "老年人服务画像（marts.elder_portrait）"
    at.selectbox(key="cat_column").set_value("living_arrangement").run()
    dot = at.get("graphviz_chart")[0].proto.spec
    assert "library.dim_elder" in dot and "staged.muni_elders" in dot
    scenarios = at.dataframe[-2].value
    assert len(scenarios) == 25 and "编号" in scenarios.columns


def test_review_queue_records_a_stewards_decision(writable_lake: Lake) -> None:
    at = app_as("steward")
    at.switch_page(screen("review")).run()
    (pending,) = reader_rows(
        writable_lake, "SELECT count(*) FROM library.match_review_queue WHERE status = 'OPEN'"
    )[0]
    assert metrics(at)["待复核"] == f"{pending} 对"
    pair = at.selectbox(key="rv_pick").value
    at.button(key="rv_match").click().run()
    decisions = read_decisions(writable_lake)
    assert decisions["pair_id"].to_list() == [pair]
    assert decisions["decided_by"].item() == "steward" and decisions["decision"].item() == "match"
    assert metrics(at)["待复核"] == f"{pending - 1} 对"


def test_exports_list_agreements_packages_and_expiry(lake: Lake) -> None:
    at = app_as("steward")
    at.switch_page(screen("exports")).run()
    shown = metrics(at)
    assert shown["协议数"] == "3 份" and shown["数据包"] == "2 个"
    agreements = at.dataframe[0].value
    assert "● 已过期" in set(agreements["状态"])  # the 2025 example
    packages = at.dataframe[1].value
    assert set(packages["完整性"]) == {"● 完整"}


def test_a_recipient_sees_only_their_own_packages(lake: Lake) -> None:
    at = app_as("fudan")
    assert at.title[0].value == "开放数据"
    assert metrics(at)["协议数"] == "1 份" and metrics(at)["数据包"] == "1 个"
    assert set(at.dataframe[1].value["接收方"]) == {"复旦大学公共卫生学院"}


# --------------------------------------------------------------------------- while a build writes


@contextlib.contextmanager
def warehouse_held_by_a_writer(lake: Lake) -> Iterator[None]:
    """Another process holds ``warehouse.duckdb`` open for writing, as a nightly build does."""
    holder = (
        "import duckdb, sys; c = duckdb.connect(sys.argv[1]); print('held', flush=True); sys.stdin.read()"
    )
    with subprocess.Popen(
        [sys.executable, "-c", holder, str(lake.warehouse)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as writer:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "held"
        try:
            yield
        finally:
            writer.communicate("")


def test_pages_stay_up_while_a_build_holds_the_warehouse(writable_lake: Lake) -> None:
    with warehouse_held_by_a_writer(writable_lake):
        at = app_as("leader")
        shown = {}
        for module in ("street", "quality", "catalog"):
            at.switch_page(screen(module)).run()
            assert not at.exception, (module, [e.value for e in at.exception])
            shown[module] = metrics(at)
    assert "老人数" in shown["street"] and shown["quality"]["已检查表"] == "4 张"
    assert shown["catalog"]["行数"]


def test_kpi_figures_are_served_while_a_build_holds_the_warehouse(writable_lake: Lake) -> None:
    """Role connections read the views' DDL (warehouse_views.sql), not the locked file."""
    with warehouse_held_by_a_writer(writable_lake):
        at = app_as("leader")
    assert ":green[● 达标]" in metrics(at), texts(at)


# --------------------------------------------------------------------------- street staff with the marts


@pytest.fixture()
def staff_marts_granted() -> Iterator[None]:
    previous = set_connector(staff_marts_connector)  # type: ignore[arg-type]
    yield
    set_connector(previous)


def test_street_staff_with_granted_marts_see_and_act_on_their_street(
    writable_lake: Lake, staff_marts_granted: None
) -> None:
    at = app_as("staff_013")
    assert "长白新村街道 · 指标达标情况" in texts(at)
    assert len(at.dataframe) >= 1 and not at.warning
    at.switch_page(screen("portraits")).run()
    assert "个人画像" in texts(at) and at.selectbox(key="pt_key").value
    at.switch_page(screen("alerts")).run()
    listed = at.dataframe[1].value
    mine = current_alerts(writable_lake).filter(
        (pl.col("street") == STAFF_STREET) & (pl.col("state") != CLOSED)
    )
    assert set(listed["街道"]) == {"长白新村街道"} and len(listed) == mine.height
    alert_id = at.selectbox(key="alerts_pick").value
    assert alert_id in set(mine["alert_id"].to_list())
    at.button(key="alerts_ack").click().run()
    state = alert_states(writable_lake).filter(pl.col("alert_id") == alert_id).row(0, named=True)
    assert (state["state"], state["acknowledged_by"]) == ("ACKNOWLEDGED", "staff_013")
