"""The dashboards' page registry: one module per page under ``dashboards/screens/``.

The folder is deliberately not called ``pages/``: next to the entry point, a ``pages/``
folder switches Streamlit to its old multipage mode, in which an address such as
``/kpi`` runs that file directly, without ``app.py`` (no login, no navigation).

Add a page by writing ``screens/<name>.py`` and one :class:`PageSpec` here; the
entry point (``app.py``) builds the navigation from this list, grouped by section,
with only the pages the logged-in user's role may open (``roles``). Hiding a page is
convenience, not protection: what a role may read is decided by its role views
(:mod:`dashboards.access`), and each page checks the role again on entry.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

PAGES_DIR = Path(__file__).resolve().parent / "screens"
ALL_ROLES = frozenset({"steward", "street_staff", "leadership", "analyst", "third_party"})


@dataclass(frozen=True)
class PageSpec:
    module: str  # file name under screens/, without .py
    title: str
    icon: str
    section: str
    default: bool = False
    roles: frozenset[str] = ALL_ROLES

    @property
    def path(self) -> Path:
        return PAGES_DIR / f"{self.module}.py"

    @property
    def url_path(self) -> str:
        return self.module


def _roles(*names: str) -> frozenset[str]:
    unknown = set(names) - ALL_ROLES
    if unknown:
        raise ValueError(f"unknown roles {sorted(unknown)}")
    return frozenset(names)


STAFF = _roles("steward", "street_staff", "leadership", "analyst")

PAGES: tuple[PageSpec, ...] = (
    PageSpec(
        module="kpi",
        title="指标看板",
        icon=":material/monitoring:",
        section="总览",
        default=True,
        roles=STAFF,
    ),
    PageSpec(module="street", title="街道详情", icon=":material/location_city:", section="总览", roles=STAFF),
    PageSpec(module="map", title="设施与告警地图", icon=":material/map:", section="总览", roles=STAFF),
    PageSpec(module="portraits", title="老年人画像", icon=":material/elderly:", section="服务", roles=STAFF),
    PageSpec(
        module="alerts",
        title="安全告警",
        icon=":material/notifications_active:",
        section="服务",
        roles=_roles("steward", "street_staff", "analyst"),
    ),
    PageSpec(
        module="quality",
        title="数据质量",
        icon=":material/fact_check:",
        section="数据治理",
        roles=_roles("steward", "leadership", "analyst"),
    ),
    PageSpec(
        module="catalog", title="数据目录", icon=":material/menu_book:", section="数据治理", roles=STAFF
    ),
    PageSpec(
        module="review",
        title="主索引人工复核",
        icon=":material/join_inner:",
        section="数据治理",
        roles=_roles("steward"),
    ),
    PageSpec(
        module="exports",
        title="开放数据",
        icon=":material/inventory_2:",
        section="数据治理",
        roles=_roles("steward", "third_party"),
    ),
    PageSpec(
        module="home", title="数据湖概览", icon=":material/home:", section="数据治理", roles=_roles("steward")
    ),
)


def pages_for(role: str, pages: Iterable[PageSpec] = PAGES) -> list[PageSpec]:
    """The pages ``role`` may open, in registry order."""
    return [p for p in pages if role in p.roles]


def default_page(role: str, pages: Iterable[PageSpec] = PAGES) -> PageSpec | None:
    """The registry's default page when the role may open it, else the role's first page."""
    allowed = pages_for(role, pages)
    return next((p for p in allowed if p.default), allowed[0] if allowed else None)


def page(module: str, pages: Iterable[PageSpec] = PAGES) -> PageSpec:
    for p in pages:
        if p.module == module:
            return p
    raise KeyError(module)


def sections(pages: Iterable[PageSpec] = PAGES) -> dict[str, list[PageSpec]]:
    """Pages grouped by section, in registry order."""
    grouped: dict[str, list[PageSpec]] = {}
    for p in pages:
        grouped.setdefault(p.section, []).append(p)
    return grouped
