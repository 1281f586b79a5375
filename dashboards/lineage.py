"""Column lineage as a Graphviz graph, from the catalogue (``marts/catalog/catalog.json``).

The catalogue lists, per column, its one-hop ``upstream`` (``zone.table.column``, a pivot
key as ``zone.table.column[key]``) and every column it flows into (``downstream``); KPI
values point at ``kpi.<id>.value``, whose sources are the KPI's ``value_sources``. Walking
``upstream`` from a column back to the source systems gives its lineage graph; the DOT
text renders offline in the browser (``st.graphviz_chart``), one box per table.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

_KEY = re.compile(r"^(?P<base>.+?)\[(?P<key>[^\]]+)\]$")
ZONE_COLOURS = {
    "landing": "#f2f2f2",
    "raw": "#e8eef7",
    "staged": "#dbe8f5",
    "quarantine": "#f7e1e1",
    "library": "#dff0d8",
    "marts": "#fcf0d2",
    "kpi": "#f6dff0",
    "engine": "#eeeeee",
}


@dataclass
class LineageGraph:
    nodes: set[str] = field(default_factory=set)
    edges: set[tuple[str, str]] = field(default_factory=set)  # (upstream, downstream)
    truncated: bool = False


def split_ref(ref: str) -> tuple[str, str, str | None]:
    """``zone.table.column[key]`` -> (``zone.table``, column, key)."""
    key = None
    match = _KEY.match(ref)
    if match:
        ref, key = match["base"], match["key"]
    table, _, column = ref.rpartition(".")
    return table, column, key


class CatalogueLineage:
    """Upstream lookups over a parsed ``catalog.json``."""

    def __init__(self, catalog: Mapping[str, Any]) -> None:
        self.columns: dict[tuple[str, str], Mapping[str, Any]] = {}
        self.labels: dict[str, str] = {}
        for ds in catalog.get("datasets", []):
            self.labels[ds["id"]] = ds.get("name_zh") or ds["id"]
            for col in ds.get("columns", []):
                self.columns[(ds["id"], col["name"])] = col
        self.kpis = {k["id"]: k for k in catalog.get("kpis", [])}
        for kpi_id, kpi in self.kpis.items():
            self.labels[f"kpi.{kpi_id}"] = kpi.get("name_zh") or kpi_id

    def column_label(self, ref: str) -> str:
        table, column, key = split_ref(ref)
        col = self.columns.get((table, column))
        zh = col.get("zh") if col else None
        text = f"{column}（{zh}）" if zh and zh != column else column
        return f"{text}[{key}]" if key else text

    def upstream(self, ref: str) -> list[str]:
        table, column, key = split_ref(ref)
        if table.startswith("kpi."):
            kpi = self.kpis.get(table.removeprefix("kpi."))
            return list(kpi.get("value_sources", [])) if kpi else []
        col = self.columns.get((table, column))
        if col is None:
            return []
        refs = list(col.get("upstream", []))
        if key is not None:  # a pivot key: the sources of that key only, when they can be told apart
            same = [r for r in refs if split_ref(r)[1] == key or split_ref(r)[2] == key]
            refs = same or refs
        return refs

    def trace(self, ref: str, depth: int = 8, max_nodes: int = 60) -> LineageGraph:
        """Every column ``ref`` derives from, up to ``depth`` hops (at most ``max_nodes``)."""
        graph = LineageGraph(nodes={ref})
        frontier = [ref]
        for _ in range(depth):
            following: list[str] = []
            for node in frontier:
                for up in self.upstream(node):
                    graph.edges.add((up, node))
                    if up not in graph.nodes:
                        if len(graph.nodes) >= max_nodes:
                            graph.truncated = True
                            continue
                        graph.nodes.add(up)
                        following.append(up)
            if not following:
                break
            frontier = following
        graph.edges = {(a, b) for a, b in graph.edges if a in graph.nodes and b in graph.nodes}
        return graph

    def downstream(self, ref: str) -> list[str]:
        table, column, _ = split_ref(ref)
        col = self.columns.get((table, column))
        return list(col.get("downstream", [])) if col else []


def _quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return '"' + escaped + '"'


def to_dot(graph: LineageGraph, lineage: CatalogueLineage, focus: str, extra: Iterable[str] = ()) -> str:
    """DOT text: one cluster per table (labelled with its Chinese name), edges left to right.

    ``extra`` are downstream columns of ``focus`` drawn one hop to its right.
    """
    nodes = set(graph.nodes)
    edges = set(graph.edges)
    for down in extra:
        nodes.add(down)
        edges.add((focus, down))
    by_table: dict[str, list[str]] = {}
    for node in sorted(nodes):
        by_table.setdefault(split_ref(node)[0], []).append(node)
    ids = {node: f"n{i}" for i, node in enumerate(sorted(nodes))}
    lines = [
        "digraph lineage {",
        "  rankdir=LR;",
        '  graph [fontname="WenQuanYi Micro Hei", fontsize=11];',
        '  node [shape=box, style="rounded,filled", fillcolor=white,'
        ' fontname="WenQuanYi Micro Hei", fontsize=10];',
        '  edge [color="#555555"];',
    ]
    for i, (table, members) in enumerate(sorted(by_table.items())):
        zone = table.split(".", 1)[0]
        zh = lineage.labels.get(table)
        label = f"{table}\n{zh}" if zh else table
        lines.append(f"  subgraph cluster_{i} {{")
        fill = _quote(ZONE_COLOURS.get(zone, "#ffffff"))
        lines.append(f'    label={_quote(label)}; style=filled; color="#999999"; fillcolor={fill};')
        for node in members:
            attrs = f"label={_quote(lineage.column_label(node))}"
            if node == focus:
                attrs += ', fillcolor="#ffd54f", penwidth=2'
            lines.append(f"    {ids[node]} [{attrs}];")
        lines.append("  }")
    for a, b in sorted(edges):
        lines.append(f"  {ids[a]} -> {ids[b]};")
    lines.append("}")
    return "\n".join(lines)
