"""The dashboards' page registry: one module per page under ``dashboards/pages/``.

Add a page by writing ``pages/<name>.py`` and one :class:`PageSpec` here; the
entry point (``app.py``) builds the navigation from this list, grouped by section.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PAGES_DIR = Path(__file__).resolve().parent / "pages"


@dataclass(frozen=True)
class PageSpec:
    module: str  # file name under pages/, without .py
    title: str
    icon: str
    section: str
    default: bool = False

    @property
    def path(self) -> Path:
        return PAGES_DIR / f"{self.module}.py"

    @property
    def url_path(self) -> str:
        return self.module


PAGES: tuple[PageSpec, ...] = (
    PageSpec(module="home", title="数据湖概览", icon="🏠", section="总览", default=True),
)


def sections(pages: tuple[PageSpec, ...] = PAGES) -> dict[str, list[PageSpec]]:
    """Pages grouped by section, in registry order."""
    grouped: dict[str, list[PageSpec]] = {}
    for page in pages:
        grouped.setdefault(page.section, []).append(page)
    return grouped
