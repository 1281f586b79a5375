"""The UI launcher (rainbow.ui) and the Streamlit dashboards' home page.

* Home page: Streamlit's AppTest against a small lake in ``tmp_path``.
* Launcher: the supervisor is run in a subprocess with tiny fake HTTP services
  (fast); the real ``dagster dev`` + ``streamlit run`` pair is exercised by the
  slow test. Orphans are checked by scanning /proc for every descendant pid
  captured while the launcher ran.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
import streamlit as st
import yaml
from streamlit.testing.v1 import AppTest

import dashboards
from dashboards.access import Session
from dashboards.common import SESSION_KEY
from dashboards.data import (
    WarehouseState,
    format_bytes,
    group_by_zone,
    landing_summary,
    read_warehouse,
)
from dashboards.navigation import PAGES, page
from rainbow import ui
from rainbow.settings import LAKE_ROOT_ENV, Lake
from rainbow.warehouse import connect_warehouse

APP = Path(dashboards.__file__).resolve().parent / "app.py"
linux_only = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True)
def _clear_streamlit_cache() -> Iterator[None]:
    st.cache_data.clear()
    yield
    st.cache_data.clear()


@pytest.fixture
def lake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Lake:
    root = tmp_path / "lake"
    root.mkdir()
    monkeypatch.setenv(LAKE_ROOT_ENV, str(root))
    return Lake(root)


def make_warehouse(lake: Lake, monkeypatch: pytest.MonkeyPatch, rows: int = 3) -> None:
    """``raw.demo``: a view over a Parquet file named relative to the lake root, as the pipeline may."""
    lake.raw.mkdir(parents=True, exist_ok=True)
    pl.DataFrame({"elder_id": [f"E{i:03d}" for i in range(rows)]}).write_parquet(lake.raw / "demo.parquet")
    with monkeypatch.context() as m:
        m.chdir(lake.root)
        con = connect_warehouse(lake)
        con.execute("CREATE SCHEMA raw")
        con.execute("CREATE VIEW raw.demo AS SELECT * FROM read_parquet('raw/demo.parquet')")
        con.close()


def run_app(cwd: Path, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    """The app logged in as a steward (the only role with the home page), on the home page."""
    monkeypatch.chdir(cwd)  # not the lake root: relative view paths must still resolve
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.session_state[SESSION_KEY] = Session("steward", "数据管理员", "steward")
    at.run()
    at.switch_page(str(page("home").path)).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


# --------------------------------------------------------------------------- home page (AppTest)


def test_home_shows_title_zone_tables_and_row_counts(
    lake: Lake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_warehouse(lake, monkeypatch, rows=3)
    at = run_app(tmp_path, monkeypatch)
    assert at.title[0].value == "彩虹桥 养老数据湖"
    assert {m.label: m.value for m in at.metric}["原始区（raw）"] == "3 行"
    tables = at.dataframe[0].value
    assert list(tables["表名"]) == ["demo"]
    assert list(tables["类型"]) == ["视图"]
    assert list(tables["行数"]) == [3]


def test_home_without_warehouse_or_landing_shows_friendly_messages(
    lake: Lake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = run_app(tmp_path, monkeypatch)
    assert at.title[0].value == "彩虹桥 养老数据湖"
    infos = " ".join(i.value for i in at.info)
    assert "数据仓库尚未生成" in infos
    assert "落地区目录尚不存在" in infos
    assert not at.dataframe


def test_home_with_warehouse_locked_by_a_writer_shows_friendly_message(
    lake: Lake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_warehouse(lake, monkeypatch)
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
        at = run_app(tmp_path, monkeypatch)
        writer.communicate("")  # EOF on stdin: the writer closes and exits
    assert "正在被流水线写入" in " ".join(i.value for i in at.info)


def test_home_lists_landing_files_per_source_system(
    lake: Lake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (lake.landing / "his" / "2026-01").mkdir(parents=True)
    (lake.landing / "his" / "2026-01" / "a.csv").write_bytes(b"x" * 1000)
    (lake.landing / "his" / "b.csv").write_bytes(b"y" * 24)
    (lake.landing / "his" / ".b.csv.123.tmp").write_bytes(b"partial")  # atomic-write temporary
    (lake.landing / "hr").mkdir()
    (lake.landing / "hr" / "staff.xlsx").write_bytes(b"z" * 2048)
    at = run_app(tmp_path, monkeypatch)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["源系统目录"] == "2"
    assert metrics["文件总数"] == "3"
    landing = at.dataframe[-1].value
    assert list(landing["源系统"]) == ["his", "hr"]
    assert list(landing["文件数"]) == [2, 1]
    assert list(landing["大小"]) == ["1.0 KiB", "2.0 KiB"]


# --------------------------------------------------------------------------- data module (pure)


def test_read_warehouse_counts_rows_and_survives_unreadable_views(
    lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_warehouse(lake, monkeypatch, rows=5)
    con = connect_warehouse(lake)
    con.execute("CREATE SCHEMA marts")
    con.execute("CREATE TABLE marts.kpi AS SELECT range AS v FROM range(7)")
    con.close()
    # the view's file disappears after the view was made (a build in progress, say)
    (lake.raw / "demo.parquet").rename(lake.raw / "moved.parquet")
    overview = read_warehouse(lake.warehouse)
    assert overview.state is WarehouseState.OK
    by_name = {(t.schema, t.name): t for t in overview.tables}
    assert by_name["marts", "kpi"].rows == 7
    assert by_name["raw", "demo"].rows is None
    assert by_name["raw", "demo"].error
    zones = group_by_zone(overview.tables)
    assert [z.zone for z in zones] == ["raw", "marts"]  # lake order, not alphabetical
    assert zones[1].total_rows == 7
    assert zones[0].unreadable == 1


def test_read_warehouse_on_missing_and_corrupt_files(tmp_path: Path) -> None:
    assert read_warehouse(tmp_path / "none.duckdb").state is WarehouseState.MISSING
    bad = tmp_path / "bad.duckdb"
    bad.write_text("not a database")
    overview = read_warehouse(bad)
    assert overview.state is WarehouseState.ERROR
    assert overview.detail


def test_landing_summary_on_missing_folder(tmp_path: Path) -> None:
    assert landing_summary(tmp_path / "landing") == []


@pytest.mark.parametrize(
    ("size", "text"), [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (5 * 1024**3, "5.0 GiB")]
)
def test_format_bytes(size: int, text: str) -> None:
    assert format_bytes(size) == text


def test_every_registered_page_exists_and_one_is_default() -> None:
    assert all(page.path.is_file() for page in PAGES)
    assert sum(page.default for page in PAGES) == 1


# --------------------------------------------------------------------------- launcher: setup


def test_service_specs_bind_loopback_and_turn_off_usage_stats() -> None:
    dagster, streamlit = ui.service_specs("127.0.0.1", 3100, 8600)
    assert dagster.argv[1:] == (
        "-m",
        "dagster",
        "dev",
        "-m",
        "pipelines.definitions",
        "-h",
        "127.0.0.1",
        "-p",
        "3100",
    )
    assert streamlit.argv[1:5] == ("-m", "streamlit", "run", str(APP))
    flags = dict(zip(streamlit.argv[5::2], streamlit.argv[6::2], strict=True))
    assert flags == {
        "--server.address": "127.0.0.1",
        "--server.port": "8600",
        "--server.headless": "true",
        "--browser.gatherUsageStats": "false",
        "--client.toolbarMode": "minimal",
    }
    assert dagster.health_url == "http://127.0.0.1:3100/server_info"
    assert streamlit.health_url == "http://127.0.0.1:8600/_stcore/health"


def test_child_env_passes_lake_root_and_dagster_home(lake: Lake) -> None:
    env = ui.child_env(lake, lake.dagster_home, base={"PATH": "/usr/bin"})
    assert env == {"PATH": "/usr/bin", LAKE_ROOT_ENV: str(lake.root), "DAGSTER_HOME": str(lake.dagster_home)}


def test_dagster_home_has_telemetry_off(lake: Lake) -> None:
    home = ui._fallback_dagster_home(lake)
    assert home == lake.dagster_home
    assert (home / "dagster.yaml").read_text() == "telemetry:\n  enabled: false\n"
    (home / "dagster.yaml").unlink()
    home = ui.ensure_dagster_home(lake)  # whichever implementation is installed
    assert yaml.safe_load((home / "dagster.yaml").read_text())["telemetry"] == {"enabled": False}


def test_run_ui_refuses_a_taken_port(lake: Lake, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert ui.run_ui(lake, dagster_port=port, streamlit_port=free_port()) == 2
    assert "port already in use" in capsys.readouterr().out
    assert not lake.dagster_home.exists()  # nothing started, nothing written


# --------------------------------------------------------------------------- launcher: processes

FAKE_SERVICE = textwrap.dedent(
    """
    import http.server, os, signal, subprocess, sys, threading, time

    port, flags = int(sys.argv[1]), sys.argv[2:]
    sleeper = "import time; time.sleep(600)"
    stubborn = "import signal; [signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)]; "
    if "stubborn" in flags:
        exec(stubborn)
    if "grandchild" in flags:  # same process group as this service
        subprocess.Popen([sys.executable, "-c", sleeper])
    if "escapee" in flags:  # leaves the group and ignores polite signals
        subprocess.Popen([sys.executable, "-c", stubborn + sleeper], start_new_session=True)

    class Ok(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", port), Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    die_when = [f.split("=", 1)[1] for f in flags if f.startswith("die-when=")]
    while True:
        if die_when and os.path.exists(die_when[0]):
            os._exit(3)
        time.sleep(0.05)
    """
)

SUPERVISOR = textwrap.dedent(
    """
    import json, os, sys
    from rainbow.ui import ServiceSpec, supervise

    config = json.loads(sys.argv[1])
    specs = [
        ServiceSpec(
            name=s["name"],
            label=s["name"],
            argv=(sys.executable, config["script"], str(s["port"]), *s["flags"]),
            health_url=f"http://127.0.0.1:{s['port']}/",
            public_url=f"http://127.0.0.1:{s['port']}",
        )
        for s in config["services"]
    ]
    sys.exit(supervise(specs, os.environ, stop_timeout=config["stop_timeout"], poll_interval=0.1))
    """
)
READY = "Rainbow Bridge is up"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def proc_stat(pid: int) -> list[str] | None:
    """Fields after the command name of /proc/<pid>/stat; None when the pid is gone or a zombie."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rfind(")") + 2 :].split()
    return None if fields[0] in ("Z", "X") else fields


def descendants(root: int) -> set[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := proc_stat(int(entry.name))):
            parents[int(entry.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {root}
    while frontier:
        frontier = {pid for pid, ppid in parents.items() if ppid in frontier} - found
        found |= frontier
    return found


def alive(pids: set[int]) -> set[int]:
    return {pid for pid in pids if proc_stat(pid) is not None}


def wait_for(predicate: object, timeout: float, what: str) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def http_ok(url: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def start_launcher(code: str, args: list[str], log: Path, *, ignore_sigint: bool) -> subprocess.Popen[bytes]:
    """Start a launcher in its own session, like a shell job; ``ignore_sigint`` mimics a plain ``&``."""

    def preexec() -> None:
        if ignore_sigint:
            signal.signal(signal.SIGINT, signal.SIG_IGN)

    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-c", code, *args],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=preexec,
        )


def kill_all(pids: set[int]) -> None:
    for pid in alive(pids):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def fake_config(tmp_path: Path, services: list[tuple[str, list[str]]], stop_timeout: float) -> str:
    script = tmp_path / "fake_service.py"
    script.write_text(FAKE_SERVICE)
    return json.dumps(
        {
            "script": str(script),
            "stop_timeout": stop_timeout,
            "services": [{"name": n, "port": free_port(), "flags": f} for n, f in services],
        }
    )


@linux_only
@pytest.mark.parametrize("ignore_sigint", [False, True], ids=["foreground", "started-with-&"])
def test_supervisor_stops_every_process_on_sigint(tmp_path: Path, ignore_sigint: bool) -> None:
    config = fake_config(tmp_path, [("web", ["grandchild"]), ("board", ["escapee"])], stop_timeout=10)
    log = tmp_path / "launcher.log"
    launcher = start_launcher(SUPERVISOR, [config], log, ignore_sigint=ignore_sigint)
    seen: set[int] = set()
    try:
        wait_for(lambda: READY in log.read_text(errors="replace"), 30, "both fake services")
        seen = descendants(launcher.pid)
        assert len(seen) == 4  # two services, a grandchild, an escapee
        started = time.monotonic()
        launcher.send_signal(signal.SIGINT)
        assert launcher.wait(timeout=20) == 0
        elapsed = time.monotonic() - started
        wait_for(lambda: not alive(seen), 5, "no leftover processes")
    finally:
        kill_all(seen)
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
    output = log.read_text(errors="replace")
    assert "received SIGINT" in output
    # both services stop politely, without spending the 10 s grace period; the escapee,
    # outside their groups and deaf to SIGINT/SIGTERM, is found and killed
    assert elapsed < 8, output
    assert "未及时退出" not in output, output
    assert "board: 清理 1 个残留进程" in output


@linux_only
def test_supervisor_kills_a_service_that_ignores_signals(tmp_path: Path) -> None:
    config = fake_config(tmp_path, [("web", []), ("stubborn", ["stubborn", "grandchild"])], stop_timeout=1)
    log = tmp_path / "launcher.log"
    launcher = start_launcher(SUPERVISOR, [config], log, ignore_sigint=False)
    seen: set[int] = set()
    try:
        wait_for(lambda: READY in log.read_text(errors="replace"), 30, "both fake services")
        seen = descendants(launcher.pid)
        assert len(seen) >= 2  # the services (and their children) were really seen
        launcher.send_signal(signal.SIGTERM)
        assert launcher.wait(timeout=20) == 0
        wait_for(lambda: not alive(seen), 5, "no leftover processes")
    finally:
        kill_all(seen)
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
    assert "stubborn 未及时退出" in log.read_text(errors="replace")


@linux_only
def test_a_second_signal_skips_the_grace_period(tmp_path: Path) -> None:
    config = fake_config(tmp_path, [("web", []), ("stubborn", ["stubborn"])], stop_timeout=60)
    log = tmp_path / "launcher.log"
    launcher = start_launcher(SUPERVISOR, [config], log, ignore_sigint=False)
    seen: set[int] = set()
    try:
        wait_for(lambda: READY in log.read_text(errors="replace"), 30, "both fake services")
        seen = descendants(launcher.pid)
        assert len(seen) >= 2  # the services (and their children) were really seen
        started = time.monotonic()
        launcher.send_signal(signal.SIGINT)
        # a loaded machine (the quick start's test run) once took over 10 s to log the first one
        wait_for(lambda: "received SIGINT" in log.read_text(errors="replace"), 30, "the first signal")
        launcher.send_signal(signal.SIGINT)  # impatient operator: Ctrl-C again
        assert launcher.wait(timeout=20) == 0
        assert time.monotonic() - started < 45  # not the 60 s grace period
        wait_for(lambda: not alive(seen), 5, "no leftover processes")
    finally:
        kill_all(seen)
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
    assert "stubborn 未及时退出" in log.read_text(errors="replace")


@linux_only
def test_supervisor_stops_the_other_service_when_one_dies(tmp_path: Path) -> None:
    trigger = tmp_path / "die-now"
    config = fake_config(
        tmp_path, [("web", [f"die-when={trigger}"]), ("board", ["grandchild"])], stop_timeout=10
    )
    log = tmp_path / "launcher.log"
    launcher = start_launcher(SUPERVISOR, [config], log, ignore_sigint=False)
    seen: set[int] = set()
    try:
        wait_for(lambda: READY in log.read_text(errors="replace"), 30, "both fake services")
        seen = descendants(launcher.pid)
        assert len(seen) >= 2  # the services (and their children) were really seen
        trigger.touch()
        assert launcher.wait(timeout=20) == 3  # the dead service's exit code
        wait_for(lambda: not alive(seen), 5, "no leftover processes")
    finally:
        kill_all(seen)
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
    assert "web 意外退出" in log.read_text(errors="replace")


@linux_only
def test_services_stop_when_the_supervisor_is_killed(tmp_path: Path) -> None:
    """SIGKILL leaves no chance to clean up: the kernel's parent-death signal stops the services."""
    config = fake_config(tmp_path, [("web", []), ("board", [])], stop_timeout=10)
    log = tmp_path / "launcher.log"
    launcher = start_launcher(SUPERVISOR, [config], log, ignore_sigint=False)
    seen: set[int] = set()
    try:
        wait_for(lambda: READY in log.read_text(errors="replace"), 30, "both fake services")
        seen = descendants(launcher.pid)
        assert len(seen) == 2
        launcher.kill()
        launcher.wait(timeout=10)
        wait_for(lambda: not alive(seen), 10, "the services to follow their parent")
    finally:
        kill_all(seen)


@linux_only
@pytest.mark.slow
def test_run_ui_serves_dagster_and_streamlit_and_stops_cleanly_on_sigint(lake: Lake, tmp_path: Path) -> None:
    dagster_port, streamlit_port = free_port(), free_port()
    code = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        from rainbow.settings import Lake
        from rainbow.ui import run_ui

        lake, dagster_port, streamlit_port = Lake(Path(sys.argv[1])), int(sys.argv[2]), int(sys.argv[3])
        sys.exit(run_ui(lake, dagster_port=dagster_port, streamlit_port=streamlit_port))
        """
    )
    log = tmp_path / "run_ui.log"
    # started the way `rainbow ui &` would be in a script: SIGINT ignored on entry
    launcher = start_launcher(
        code, [str(lake.root), str(dagster_port), str(streamlit_port)], log, ignore_sigint=True
    )
    seen: set[int] = set()
    try:
        wait_for(
            lambda: (
                http_ok(f"http://127.0.0.1:{dagster_port}/server_info")
                and http_ok(f"http://127.0.0.1:{streamlit_port}/_stcore/health")
            ),
            120,
            "Dagster and Streamlit to answer HTTP 200",
        )
        wait_for(lambda: READY in log.read_text(errors="replace"), 10, "the URLs to be printed")
        seen = descendants(launcher.pid)
        commands = " ".join(Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ") for pid in seen)
        assert "dagster" in commands and "streamlit" in commands
        started = time.monotonic()
        launcher.send_signal(signal.SIGINT)
        assert launcher.wait(timeout=20) == 0
        assert time.monotonic() - started < 20
        wait_for(lambda: not alive(seen), 5, "no leftover dagster/streamlit processes")
    finally:
        kill_all(seen)
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
    output = log.read_text(errors="replace")
    assert f"http://127.0.0.1:{dagster_port}" in output and f"http://127.0.0.1:{streamlit_port}" in output
    assert "未及时退出" not in output, output  # both stopped politely, nothing had to be killed
    assert (lake.dagster_home / "dagster.yaml").is_file()
