"""Constrained clustering of linked profiles, and elder keys that stay stable across runs."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

KEY_CHANGE_SCHEMA: dict[str, pl.DataType] = {
    "old_key": pl.String(),
    "new_key": pl.String(),
    "change": pl.String(),  # merged | split | moved
    "records": pl.Int64(),
}
CLUSTER_SCHEMA: dict[str, pl.DataType] = {
    "profile": pl.Int64(),
    "cluster": pl.Int64(),
    "link_probability": pl.Float64(),
    "link_method": pl.String(),  # id | steward | model | source_population | null (linked to nothing)
}


@dataclass(frozen=True)
class Constraints:
    """Steward decisions as profile pairs: ``must`` link, ``cannot`` link."""

    must: list[tuple[int, int]] = field(default_factory=list)
    cannot: list[tuple[int, int]] = field(default_factory=list)


class _Components:
    """Union-find over profiles that refuses merges joining two validated IDs or a cannot-link pair."""

    def __init__(self, n: int) -> None:
        self.parent = np.arange(n, dtype=np.int64)
        # validated IDs per root: one ID as its string (most roots), several as a frozenset
        self.ids: dict[int, str | frozenset[str]] = {}
        self.cannot: dict[int, set[int]] = {}

    def find(self, x: int) -> int:
        root = x
        while self.parent[root] != root:
            root = int(self.parent[root])
        while self.parent[x] != root:
            nxt = int(self.parent[x])
            self.parent[x] = root
            x = nxt
        return root

    def id_set(self, root: int) -> frozenset[str]:
        ids = self.ids.get(root, frozenset())
        return frozenset((ids,)) if isinstance(ids, str) else ids

    def roots(self) -> np.ndarray:
        """``find`` of every element at once (pointer jumping); compresses every path."""
        roots = self.parent
        while True:
            up = roots[roots]
            if np.array_equal(up, roots):
                break
            roots = up
        self.parent = roots.copy()
        return roots

    def union(self, a: int, b: int, *, forced: bool = False) -> bool:
        """Merge the components of ``a`` and ``b``; False when a constraint forbids it."""
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return True
        ia, ib = self.id_set(ra), self.id_set(rb)
        # Two different validated IDs never become one elder, unless a steward said so.
        if not forced and ia and ib and not (ia <= ib or ib <= ia):
            return False
        ca, cb = self.cannot.get(ra, set()), self.cannot.get(rb, set())
        small, other = (ca, rb) if len(ca) <= len(cb) else (cb, ra)
        if any(self.find(x) == other for x in small):
            return False
        root, child = (ra, rb) if ra < rb else (rb, ra)
        self.parent[child] = root
        if ia or ib:
            self.ids[root] = ia | ib
            self.ids.pop(child, None)
        if ca or cb:
            self.cannot[root] = ca | cb
            self.cannot.pop(child, None)
        return True


class Clustering:
    """Profiles -> clusters: steward links, then ID groups, then linked pairs, strongest first.

    ``profiles``: ``profile`` (0..n-1), ``id_number``. A merge is refused when
    it would put two different validated IDs into one cluster (steward 'match'
    decisions excepted) or join a steward 'no_match' pair. Each profile keeps
    how it was linked (``method``) and the strongest probability that linked it.
    """

    def __init__(self, profiles: pl.DataFrame, constraints: Constraints) -> None:
        n = profiles.height
        self.n = n
        self.profiles = profiles["profile"].cast(pl.Int64)
        self.comp = _Components(n)
        self.prob = np.full(n, np.nan)
        self.method = np.full(n, None, dtype=object)
        held = {p for pair in constraints.cannot for p in pair}
        for a, b in constraints.cannot:
            self.comp.cannot.setdefault(a, set()).add(b)
            self.comp.cannot.setdefault(b, set()).add(a)
        with_id = profiles.filter(pl.col("id_number").is_not_null()).select(
            pl.col("profile").cast(pl.Int64), "id_number"
        )
        self.prob[with_id["profile"].to_numpy()] = 1.0
        self.method[with_id["profile"].to_numpy()] = "id"
        # ID groups: one vectorised union where no steward 'no_match' touches the group.
        touched = with_id.filter(pl.col("profile").is_in(list(held)))["id_number"].unique()
        free = with_id.filter(~pl.col("id_number").is_in(touched.implode()))
        heads = free.with_columns(head=pl.col("profile").min().over("id_number"))
        self.comp.parent[heads["profile"].to_numpy()] = heads["head"].to_numpy()
        firsts = heads.filter(pl.col("profile") == pl.col("head"))
        self.comp.ids.update(zip(firsts["profile"].to_list(), firsts["id_number"].to_list(), strict=True))
        deferred: list[list[int]] = []
        for id_number, members in (
            with_id.filter(pl.col("id_number").is_in(touched.implode()))
            .group_by("id_number")
            .agg(pl.col("profile").sort())
            .sort("id_number")
            .iter_rows()
        ):
            deferred.append(members)
            for p in members:
                self.comp.ids[p] = id_number
        for a, b in constraints.must:
            if self.comp.union(a, b, forced=True):
                self.prob[[a, b]] = 1.0
                self.method[[a, b]] = "steward"
        for members in deferred:
            for p in members[1:]:
                self.comp.union(members[0], p)

    def link(self, pairs: pl.DataFrame, method: str) -> int:
        """Merge along ``unique_id_l, unique_id_r, match_probability``, strongest first.

        Returns the number of merges made.
        """
        made = 0
        edges = pairs.sort(
            ["match_probability", "unique_id_l", "unique_id_r"], descending=[True, False, False]
        ).select("unique_id_l", "unique_id_r", "match_probability")
        for a, b, p in edges.iter_rows():
            before = self.comp.find(a) == self.comp.find(b)
            if self.comp.union(a, b):
                made += not before
                for x in (a, b):
                    if self.method[x] is None or (
                        self.method[x] not in ("id", "steward") and not self.prob[x] >= p
                    ):
                        self.prob[x] = p
                        self.method[x] = method
        return made

    def clusters(self) -> pl.DataFrame:
        """``profile, cluster`` (smallest profile of the cluster), ``link_probability``, ``link_method``."""
        roots = self.comp.roots()
        return pl.DataFrame(
            {
                "profile": self.profiles,
                "cluster": roots,
                "link_probability": pl.Series(self.prob).fill_nan(None),
                "link_method": pl.Series(self.method.tolist(), dtype=pl.String),
            },
            schema=CLUSTER_SCHEMA,
        )


# ------------------------------------------------------------------ keys


@dataclass(frozen=True)
class KeyAssignment:
    keys: pl.DataFrame  # cluster, elder_key
    changes: pl.DataFrame  # KEY_CHANGE_SCHEMA


def key_number(key: pl.Expr) -> pl.Expr:
    """Order of issue: the number a key ends with (keys are issued in sequence; a key without
    one sorts last)."""
    return key.str.extract(r"(\d+)$", 1).cast(pl.Int64, strict=False).fill_null(10**18)


PREVIOUS_KEY = "previous_key"


def assign_keys(
    records: pl.DataFrame, previous: pl.DataFrame | pl.Series | None, *, prefix: str, digits: int
) -> KeyAssignment:
    """An ``elder_key`` per cluster, stable against ``previous`` (record_id -> elder_key).

    ``previous`` may also be the previous run's keys alone (a Series) when ``records`` carries
    each record's previous key in :data:`PREVIOUS_KEY` (joined as the records were read: a
    district year's 16.8 M record ids are not joined again here).

    - every previous key is claimed by the cluster holding most of its records
      (ties: the cluster whose first record_id sorts first), so a rerun
      renumbers nobody and a split keeps the key on the larger part;
    - a cluster claiming several keys (a merge) keeps the oldest and records the
      others as ``merged`` into it;
    - clusters claiming none get new keys ``<prefix><number>`` continuing after
      the largest number in ``previous``, in order of their first record_id
      (pass every record the previous run keyed, so no number is issued twice).

    ``changes``: per (old key, new key) the records that changed key: ``merged``
    (the old key is retired into the new one), ``split`` (off onto a new key) or
    ``moved`` (onto another existing key).
    """
    first = records.group_by("cluster").agg(pl.col("record_id").min().alias("first")).sort("first")
    if isinstance(previous, pl.Series):
        prev = previous.cast(pl.String).drop_nulls().unique().sort().to_frame("elder_key")
        keyed = records.select(
            "cluster", pl.col(PREVIOUS_KEY).cast(pl.String).alias("elder_key")
        ).drop_nulls()
    else:
        prev = (
            previous.select(
                pl.col("record_id").cast(pl.String), pl.col("elder_key").cast(pl.String)
            ).drop_nulls()
            if previous is not None
            else pl.DataFrame(schema={"record_id": pl.String, "elder_key": pl.String})
        )
        keyed = records.join(prev, on="record_id", how="inner")
    counts = (
        keyed.group_by("cluster", "elder_key")
        .len()
        .join(first, on="cluster")
        .sort(["elder_key", "len", "first"], descending=[False, True, False])
    )
    claim = counts.group_by("elder_key", maintain_order=True).first().select("elder_key", "cluster")
    # a cluster claiming several keys keeps the oldest (key_number, then the key)
    kept = (
        claim.with_columns(_age=key_number(pl.col("elder_key")))
        .sort("cluster", "_age", "elder_key")
        .group_by("cluster", maintain_order=True)
        .first()
        .select("cluster", pl.col("elder_key").alias("_kept"))
    )
    numbered = pl.col("elder_key").str.contains(r"\d$")
    next_no = (prev.select(key_number(pl.col("elder_key")).filter(numbered).max()).item() or 0) + 1
    # clusters claiming no key get new ones, in order of their first record
    keys = (
        first.join(kept, on="cluster", how="left", maintain_order="left")
        .with_columns(_new=pl.col("_kept").is_null().cum_sum() - 1 + next_no)
        .select(
            pl.col("cluster").cast(pl.Int64),
            pl.coalesce("_kept", pl.lit(prefix) + pl.col("_new").cast(pl.String).str.zfill(digits)).alias(
                "elder_key"
            ),
        )
    )
    merged = (
        claim.join(keys, on="cluster", how="left")
        .filter(pl.col("elder_key") != pl.col("elder_key_right"))
        .select(pl.col("elder_key").alias("old_key"), pl.col("elder_key_right").alias("_merged_into"))
    )
    moved = (
        counts.join(keys, on="cluster")
        .filter(pl.col("elder_key") != pl.col("elder_key_right"))
        .select(
            pl.col("elder_key").alias("old_key"),
            pl.col("elder_key_right").alias("new_key"),
            pl.col("len").cast(pl.Int64).alias("records"),
        )
    )
    fresh = keys.filter(~pl.col("elder_key").is_in(prev["elder_key"].implode()))["elder_key"]
    changes = (
        moved.join(merged, on="old_key", how="left")
        .with_columns(
            change=pl.when(pl.col("new_key") == pl.col("_merged_into"))
            .then(pl.lit("merged"))
            .when(pl.col("new_key").is_in(fresh.implode()))
            .then(pl.lit("split"))
            .otherwise(pl.lit("moved"))
        )
        .select(list(KEY_CHANGE_SCHEMA))
    )
    return KeyAssignment(keys, changes.sort("old_key", "new_key").cast(pl.Schema(KEY_CHANGE_SCHEMA)))
