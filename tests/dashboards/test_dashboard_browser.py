"""Every page in real headless Chromium (Playwright from PyPI driving Debian's /usr/bin/chromium),
at desktop (1280 px) and phone (390 px) width: the rendered page shows the expected figures
and Chinese text, nothing overflows sideways, and a screenshot of each is kept under
``test-artifacts/screenshots/`` (git-ignored; ``$RAINBOW_TEST_ARTIFACTS`` moves it).

``streamlit run`` serves the session's built lake on a free port; each page is opened by
its address and logged into (a new browser page is a new Streamlit session).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dashboards.navigation import PAGES, page
from rainbow.settings import LAKE_ROOT_ENV, Lake
from rainbow.warehouse import open_reader
from tests.dashboards.support import APP, PASSWORD

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
READY = '[data-testid="stApp"][data-test-script-state="notRunning"]'
ARTIFACTS = Path(
    os.environ.get("RAINBOW_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts")
)
SCREENSHOTS = ARTIFACTS / "screenshots"
DESKTOP, PHONE = 1280, 390
OTHER_STREETS = ("定海路街道", "平凉路街道", "五角场街道")  # names staff_013 (长白新村) must never see


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return bool(r.status == 200)
    except OSError:
        return False


@pytest.fixture(scope="module")
def server(built_lake: Lake, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = _free_port()
    log = tmp_path_factory.mktemp("streamlit") / "streamlit.log"
    env = {**os.environ, LAKE_ROOT_ENV: str(built_lake.root)}
    env.pop("RAINBOW_DASHBOARD_USERS", None)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "streamlit", "run", str(APP),
                "--server.address", "127.0.0.1", "--server.port", str(port),
                "--server.headless", "true", "--browser.gatherUsageStats", "false",
                "--client.toolbarMode", "minimal", "--server.fileWatcherType", "none",
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while not _healthy(f"http://127.0.0.1:{port}/_stcore/health"):
            assert proc.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, "streamlit did not start"
            time.sleep(0.3)
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium is not installed (apt-get install chromium fonts-wqy-microhei)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
        )
        yield b
        b.close()


def _figures(lake: Lake) -> dict[str, Callable[[str], list[str]]]:
    """Per page: the texts it must show, by user (computed from the lake, not hard-coded)."""
    r = open_reader(lake)

    def one(sql: str) -> object:
        return r.sql(sql).fetchall()[0][0]

    month = one("SELECT max(month) FROM marts.kpi_values")
    wristbands = one(
        "SELECT value_text FROM marts.kpi_values WHERE kpi_id = 'wristband_high_age_elders' "
        f"AND area_code = '310110000000' AND month = DATE '{month}'"
    )
    vital = one(
        "SELECT count(*) FROM marts.elder_portrait WHERE status = 'ACTIVE' AND vitality_segment = 'VITAL'"
    )
    facilities = one("SELECT count(*) FROM library.dim_facility WHERE lat IS NOT NULL")
    staff_elders = one(
        "SELECT count(*) FROM library.dim_elder WHERE status = 'ACTIVE' AND street = '310110013000'"
    )
    pending = one("SELECT count(*) FROM library.match_review_queue WHERE status = 'OPEN'")
    datasets = len(
        __import__("json").loads((lake.marts / "catalog" / "catalog.json").read_text())["datasets"]
    )

    def kpi(user: str) -> list[str]:
        if user == "staff_013":  # their own street's KPIs only
            return ["指标看板", "长白新村街道", "指标达标情况"]
        return [
            "指标看板",
            "杨浦区（全区）",
            "指标达标情况",
            str(wristbands),
            "各街道 · 实际与目标",
            "指标趋势",
        ]

    def street(user: str) -> list[str]:
        if user == "staff_013":
            return ["街道详情", "长白新村街道", "本街道", f"{staff_elders:,} 人"]
        return ["街道详情", "在册在世老人", "老人数", "为老服务（按月）", "养老服务设施"]

    return {
        "kpi": kpi,
        "street": street,
        "map": lambda u: ["设施与告警地图", "离线地图", f"{facilities} 处"],
        "portraits": lambda u: (
            ["老年人画像", "老人分类分布"] + ([f"{vital:,} 人", "个人画像"] if u == "steward" else [])
        ),
        "alerts": lambda u: (
            ["安全告警"] + (["未关闭告警", "按街道与时长", "处置告警"] if u == "steward" else [])
        ),
        "quality": lambda u: ["数据质量", "来源系统评分卡", "4 张", "来源系统健康", "下载完整质量报告"],
        "catalog": lambda u: ["数据目录", "数据集检索", "场景库", f"共 {datasets} 个数据集", "字段级血缘"],
        "review": lambda u: ["主索引人工复核", "待复核", f"{pending} 对"],
        "exports": lambda u: (
            ["开放数据", "数据共享协议", "下载数据包"]
            + (["1 份", "1 个"] if u == "fudan" else ["3 份", "2 个"])
        ),
        "home": lambda u: ["彩虹桥 养老数据湖", "数据湖概览", "落地区"],
    }


CASES = (
    [("steward", p.module, w) for p in PAGES for w in (DESKTOP, PHONE)]
    + [("staff_013", m, PHONE) for m in ("kpi", "street", "portraits", "alerts", "map", "catalog")]
    + [("staff_013", "street", DESKTOP)]
    + [("leader", m, DESKTOP) for m in ("kpi", "quality", "portraits")]
    + [("fudan", "exports", PHONE)]
)


@pytest.fixture(scope="module")
def figures(built_lake: Lake) -> dict[str, Callable[[str], list[str]]]:
    return _figures(built_lake)


@pytest.mark.parametrize(("user", "module", "width"), CASES, ids=[f"{u}-{m}-{w}" for u, m, w in CASES])
def test_page_renders_in_chromium(
    server: str,
    browser: object,
    figures: dict[str, Callable[[str], list[str]]],
    user: str,
    module: str,
    width: int,
) -> None:
    ctx = browser.new_context(viewport={"width": width, "height": 900}, locale="zh-CN")  # type: ignore[attr-defined]
    tab = ctx.new_page()
    try:
        tab.goto(f"{server}/{page(module).url_path}")
        tab.wait_for_selector(READY, timeout=60_000)
        tab.get_by_label("用户名").fill(user)
        tab.get_by_label("密码").fill(PASSWORD)
        tab.get_by_role("button", name="登录").click()
        tab.wait_for_selector(
            "h1:not(:has-text('彩虹桥 养老数据湖'))" if module != "home" else "text=数据湖概览"
        )
        tab.wait_for_selector(READY, timeout=60_000)
        tab.wait_for_timeout(1_000)  # charts draw after the script finished
        main = tab.locator('[data-testid="stMain"]')
        text = main.inner_text()
        assert tab.locator('[data-testid="stException"]').count() == 0, text[:2000]
        for expected in figures[module](user):
            assert expected in text, (expected, text[:3000])
        if user == "staff_013" and module in ("kpi", "street", "portraits", "alerts"):
            assert not any(name in text for name in OTHER_STREETS), text[:3000]
        overflow = tab.evaluate(
            "() => { const m = document.querySelector('[data-testid=\"stMainBlockContainer\"]');"
            " return [document.documentElement.scrollWidth, m.scrollWidth, m.clientWidth]; }"
        )
        assert overflow[0] <= width and overflow[1] <= overflow[2] + 1, overflow  # no sideways scrolling
        height = tab.evaluate(
            "() => document.querySelector('[data-testid=\"stMainBlockContainer\"]').scrollHeight"
        )
        tab.set_viewport_size({"width": width, "height": min(int(height) + 160, 8_000)})
        tab.wait_for_timeout(600)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shot = SCREENSHOTS / f"{user}_{module}_{width}.png"
        tab.screenshot(path=str(shot))
        assert shot.stat().st_size > 10_000
    finally:
        ctx.close()


def test_elder_mode_enlarges_text_in_chromium(server: str, browser: object) -> None:
    ctx = browser.new_context(viewport={"width": PHONE, "height": 900}, locale="zh-CN")  # type: ignore[attr-defined]
    tab = ctx.new_page()
    try:
        tab.goto(f"{server}/kpi")
        tab.wait_for_selector(READY, timeout=60_000)
        tab.get_by_label("用户名").fill("leader")
        tab.get_by_label("密码").fill(PASSWORD)
        tab.get_by_role("button", name="登录").click()
        tab.wait_for_selector("h1:has-text('指标看板')")
        tab.wait_for_selector(READY, timeout=60_000)
        before = tab.evaluate("() => parseFloat(getComputedStyle(document.documentElement).fontSize)")
        tab.locator(
            '[data-testid="stSidebarCollapsedControl"] button, [data-testid="stExpandSidebarButton"]'
        ).first.click()
        tab.get_by_text("适老化模式").click()
        tab.wait_for_timeout(500)
        tab.wait_for_selector(READY, timeout=60_000)
        after = tab.evaluate("() => parseFloat(getComputedStyle(document.documentElement).fontSize)")
        assert after > before and after >= 20
        tab.locator('[data-testid="stSidebarCollapseButton"] button').first.click()  # close the menu
        tab.wait_for_timeout(500)
        width = tab.evaluate("() => document.documentElement.scrollWidth")
        assert width <= PHONE
        height = tab.evaluate(
            "() => document.querySelector('[data-testid=\"stMainBlockContainer\"]').scrollHeight"
        )
        tab.set_viewport_size({"width": PHONE, "height": min(int(height) + 160, 8_000)})
        tab.wait_for_timeout(600)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        tab.screenshot(path=str(SCREENSHOTS / f"leader_kpi_{PHONE}_elder_mode.png"))
    finally:
        ctx.close()
