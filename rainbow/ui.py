"""Run the two user interfaces side by side: the Dagster UI and the Streamlit dashboards.

:func:`run_ui` starts ``dagster dev`` and ``streamlit run dashboards/app.py`` as
children, each in its **own process group**, waits, and stops both cleanly on
Ctrl-C (SIGINT), SIGTERM or SIGHUP. If either child stops on its own, the other
is stopped too and a non-zero code is returned.

Why the care:

* ``dagster dev`` maps SIGTERM onto its SIGINT handler. A process started with
  SIGINT ignored (a plain ``&`` in a non-interactive shell) therefore ignores
  SIGTERM too. We install our own handlers before spawning, so the children
  always start with the default dispositions (handled signals reset on exec).
* ``dagster dev`` itself spawns a webserver, a daemon and a code server. The
  whole group is signalled, like a terminal's Ctrl-C would, and whatever is
  still alive after the grace period is SIGKILLed - the group and every
  descendant seen while running (checked against its start time, so a re-used
  pid is never hit).
* On Linux each child asks the kernel for SIGTERM should this supervisor die
  without cleaning up (``PR_SET_PDEATHSIG``), e.g. after a SIGKILL.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from rainbow.io import write_bytes_atomic
from rainbow.settings import LAKE_ROOT_ENV, Lake

DAGSTER_MODULE = "pipelines.definitions"
DEFAULT_STOP_TIMEOUT = 15.0
DEFAULT_STARTUP_TIMEOUT = 180.0
_DAGSTER_YAML = "telemetry:\n  enabled: false\n"
_PR_SET_PDEATHSIG = 1
_ESCAPED_GRACE = 2.0
_SNAPSHOT_INTERVAL = 5.0
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@dataclass(frozen=True)
class ServiceSpec:
    """One child service: how to start it and how to tell it is up."""

    name: str
    label: str
    argv: tuple[str, ...]
    health_url: str
    public_url: str


@dataclass
class _Child:
    spec: ServiceSpec
    proc: subprocess.Popen[bytes]
    # (pid, start time) of every descendant seen while running
    seen: set[tuple[int, int]] = field(default_factory=set)


# --------------------------------------------------------------------------- setup


def ensure_dagster_home(lake: Lake) -> Path:
    """Make ``<lake>/dagster_home`` with a ``dagster.yaml`` (telemetry off); return it.

    Delegates to ``pipelines.instance.ensure_dagster_home`` when that module
    exists, so the pipeline owns the instance configuration.
    """
    if importlib.util.find_spec("pipelines.instance") is not None:
        module = importlib.import_module("pipelines.instance")
        home: Path = module.ensure_dagster_home(lake)
        return home
    return _fallback_dagster_home(lake)


def _fallback_dagster_home(lake: Lake) -> Path:
    home = lake.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        write_bytes_atomic(config, _DAGSTER_YAML.encode())
    return home


def streamlit_app_path() -> Path:
    """The Streamlit entry point, ``dashboards/app.py`` of the installed package."""
    import dashboards

    return Path(dashboards.__file__).resolve().parent / "app.py"


def _connect_host(host: str) -> str:
    """The address to probe for a server bound to ``host``."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def service_specs(host: str, dagster_port: int, streamlit_port: int) -> list[ServiceSpec]:
    """The Dagster UI and the Streamlit dashboards, started with this interpreter."""
    probe = _connect_host(host)
    dagster = ServiceSpec(
        name="dagster",
        label="Dagster 编排界面 / Dagster UI",
        argv=(
            sys.executable,
            "-m",
            "dagster",
            "dev",
            "-m",
            DAGSTER_MODULE,
            "-h",
            host,
            "-p",
            str(dagster_port),
        ),
        health_url=f"http://{probe}:{dagster_port}/server_info",
        public_url=f"http://{probe}:{dagster_port}",
    )
    streamlit = ServiceSpec(
        name="streamlit",
        label="数据看板 / Dashboards",
        argv=(
            sys.executable,
            "-m",
            "streamlit",
            "run",
            str(streamlit_app_path()),
            "--server.address",
            host,
            "--server.port",
            str(streamlit_port),
            "--server.headless",
            "true",
            "--browser.gatherUsageStats",
            "false",
            "--client.toolbarMode",
            "minimal",  # no developer "Deploy" menu for care staff
        ),
        health_url=f"http://{probe}:{streamlit_port}/_stcore/health",
        public_url=f"http://{probe}:{streamlit_port}",
    )
    return [dagster, streamlit]


def child_env(lake: Lake, dagster_home: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    env[LAKE_ROOT_ENV] = str(lake.root)
    env["DAGSTER_HOME"] = str(dagster_home)
    return env


def port_in_use(host: str, port: int) -> bool:
    """True when a server could not bind ``host:port`` right now."""
    bind_host = host.strip("[]") or "0.0.0.0"
    family = socket.AF_INET6 if ":" in bind_host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((bind_host, port))
        except OSError:
            return True
    return False


# --------------------------------------------------------------------------- public entry


def run_ui(lake: Lake, dagster_port: int = 3000, streamlit_port: int = 8501, host: str = "127.0.0.1") -> int:
    """Serve the Dagster UI and the dashboards until Ctrl-C/SIGTERM; return an exit code.

    0 after a requested stop; non-zero when a port is taken (2) or a service
    stopped on its own (its exit code, or 1).
    """
    console = Console()
    if dagster_port == streamlit_port:
        console.print(f"[red]两个界面不能使用同一端口 / the two UIs need different ports ({dagster_port})[/]")
        return 2
    for port in (dagster_port, streamlit_port):
        if port_in_use(host, port):
            console.print(f"[red]端口已被占用 / port already in use: {host}:{port}[/]")
            return 2
    lake.root.mkdir(parents=True, exist_ok=True)
    home = ensure_dagster_home(lake)
    specs = service_specs(host, dagster_port, streamlit_port)
    console.print(f"彩虹桥 养老数据湖 / Rainbow Bridge — 数据湖 / lake: [bold]{lake.root}[/]")
    return supervise(specs, child_env(lake, home), console=console)


def supervise(
    specs: Sequence[ServiceSpec],
    env: Mapping[str, str],
    *,
    console: Console | None = None,
    stop_timeout: float = DEFAULT_STOP_TIMEOUT,
    startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
    poll_interval: float = 0.25,
) -> int:
    """Start every service, wait for a stop signal or a dying child, stop them all."""
    return _Supervisor(
        list(specs),
        dict(env),
        console or Console(),
        stop_timeout=stop_timeout,
        startup_timeout=startup_timeout,
        poll_interval=poll_interval,
    ).run()


# --------------------------------------------------------------------------- supervisor


class _Supervisor:
    def __init__(
        self,
        specs: list[ServiceSpec],
        env: dict[str, str],
        console: Console,
        *,
        stop_timeout: float,
        startup_timeout: float,
        poll_interval: float,
    ) -> None:
        self.specs = specs
        self.env = env
        self.console = console
        self.stop_timeout = stop_timeout
        self.startup_timeout = startup_timeout
        self.poll_interval = poll_interval
        self.children: list[_Child] = []
        self.stop_requested = threading.Event()
        self.stop_signal: int | None = None
        self.stopping = False
        self.hurry = threading.Event()  # a signal while stopping: skip the grace period

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if self.stopping:
            self.hurry.set()
        if self.stop_signal is None:
            self.stop_signal = signum
        self.stop_requested.set()

    def run(self) -> int:
        with self._signal_handlers():
            try:
                for spec in self.specs:
                    if self.stop_requested.is_set():
                        break
                    try:
                        self.children.append(self._spawn(spec))
                    except OSError as exc:
                        self.console.print(f"[red]无法启动 / cannot start {spec.label}: {exc}[/]")
                        return 1
                return self._wait()
            finally:
                self._stop_all()

    @contextlib.contextmanager
    def _signal_handlers(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.getsignal(sig) for sig in _STOP_SIGNALS}
        for sig in _STOP_SIGNALS:
            signal.signal(sig, self._on_signal)
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _spawn(self, spec: ServiceSpec) -> _Child:
        proc = subprocess.Popen(
            spec.argv,
            env=self.env,
            stdin=subprocess.DEVNULL,
            process_group=0,
            preexec_fn=_die_with_parent_preexec(),
        )
        return _Child(spec, proc)

    def _wait(self) -> int:
        started = last_snapshot = time.monotonic()
        pending = {c.spec.name for c in self.children}
        warned = False
        while not self.stop_requested.is_set():
            if time.monotonic() - last_snapshot > _SNAPSHOT_INTERVAL:
                self._snapshot_descendants()
                last_snapshot = time.monotonic()
            for child in self.children:
                rc = child.proc.poll()
                if rc is not None:
                    self.console.print(
                        f"[red]{child.spec.label} 意外退出 / stopped unexpectedly (exit code {rc});"
                        " 正在停止其他服务 / stopping the others[/]"
                    )
                    return rc if rc > 0 else 1
            if pending:
                for child in self.children:
                    if child.spec.name in pending and _http_ok(child.spec.health_url):
                        pending.discard(child.spec.name)
                if not pending:
                    self._snapshot_descendants()
                    self._print_ready()
                elif not warned and time.monotonic() - started > self.startup_timeout:
                    warned = True
                    self.console.print(
                        f"[yellow]仍在等待启动 / still waiting for: {', '.join(sorted(pending))}[/]"
                    )
            self.stop_requested.wait(self.poll_interval)
        name = signal.Signals(self.stop_signal).name if self.stop_signal else "stop"
        self.console.print(
            f"收到 {name}，正在停止（再按一次 Ctrl-C 立即结束）/ received {name}, stopping"
            " (press Ctrl-C again to kill now) …"
        )
        return 0

    def _print_ready(self) -> None:
        table = Table.grid(padding=(0, 2))
        for child in self.children:
            table.add_row(child.spec.label, f"[link={child.spec.public_url}]{child.spec.public_url}[/link]")
        table.add_row("", "")
        table.add_row("按 Ctrl-C 停止", "Press Ctrl-C to stop")
        self.console.print(
            Panel(table, title="彩虹桥 养老数据湖 已启动 / Rainbow Bridge is up", expand=False)
        )

    def _snapshot_descendants(self) -> None:
        for child in self.children:
            child.seen |= _descendants(child.proc.pid)

    def _stop_all(self) -> None:
        """Signal every group, wait, SIGKILL what is left, then clean up escaped descendants."""
        self.stopping = True
        self._snapshot_descendants()
        for child in self.children:
            if child.proc.poll() is None:
                _signal_group(child.proc.pid, signal.SIGINT)
        deadline = time.monotonic() + self.stop_timeout
        while time.monotonic() < deadline and not self.hurry.is_set():
            # poll() reaps an exited leader, so its group empties once every member is gone
            if all(c.proc.poll() is not None and not _group_members(c.proc.pid) for c in self.children):
                break
            self.hurry.wait(0.1)
        for child in self.children:
            if child.proc.poll() is None or _group_members(child.proc.pid):
                self.console.print(
                    f"[yellow]{child.spec.label} 未及时退出，强制结束 / did not stop in time, killing[/]"
                )
                _signal_group(child.proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.proc.wait(timeout=5)
        for child in self.children:
            self._reap_escaped(child)

    def _reap_escaped(self, child: _Child) -> None:
        """Descendants that left the child's process group would outlive it: stop them too."""
        escaped = {(pid, start) for pid, start in child.seen if _start_time(pid) == start}
        if not escaped:
            return
        self.console.print(
            f"[yellow]{child.spec.label}: 清理 {len(escaped)} 个残留进程 / "
            f"stopping {len(escaped)} leftover process(es)[/]"
        )
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid, start in escaped:
                if _start_time(pid) == start:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(pid, sig)
            deadline = time.monotonic() + _ESCAPED_GRACE
            while time.monotonic() < deadline and any(_start_time(p) == s for p, s in escaped):
                time.sleep(0.05)


# --------------------------------------------------------------------------- process helpers


def _die_with_parent_preexec() -> Callable[[], None] | None:
    """A preexec_fn asking Linux to SIGTERM the child when this process dies."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _http_ok(url: str, timeout: float = 1.0) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy
    try:
        with opener.open(url, timeout=timeout) as response:
            return bool(response.status == 200)
    except (OSError, ValueError):
        return False


def _read_stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (state is [0]); None if gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rfind(")") + 2 :].split()


def _start_time(pid: int) -> int | None:
    """Start time of a live (non-zombie) process, None when it is gone."""
    fields = _read_stat(pid)
    if fields is None or fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def _proc_table() -> Iterator[tuple[int, int, int, int]]:
    """(pid, ppid, pgid, start time) of every live process; empty without /proc."""
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            fields = _read_stat(int(entry.name))
            if fields is None or fields[0] in ("Z", "X"):
                continue
            yield int(entry.name), int(fields[1]), int(fields[2]), int(fields[19])


def _descendants(root: int) -> set[tuple[int, int]]:
    table = list(_proc_table())
    children: dict[int, list[tuple[int, int]]] = {}
    for pid, ppid, _pgid, start in table:
        children.setdefault(ppid, []).append((pid, start))
    found: set[tuple[int, int]] = set()
    stack = [root]
    while stack:
        for pid, start in children.get(stack.pop(), []):
            if (pid, start) not in found:
                found.add((pid, start))
                stack.append(pid)
    return found


def _group_members(pgid: int) -> set[tuple[int, int]]:
    if not Path("/proc").is_dir():
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return set()
        return {(-pgid, 0)}  # alive, members unknown; SIGKILL of the group handles it
    return {(pid, start) for pid, _ppid, group, start in _proc_table() if group == pgid}
