"""A built lake is encrypted at rest: raw, staged and library files are unreadable without the key.

Runs on the session's library lake (generated, ingested, staged, library built by the real
code, with the development key created on first use) and on copies of it for rotation.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from masking.access import open_role_connection
from masking.encryption import RESTRICTED_ZONES, is_encrypted, zone_files
from masking.secrets import ENCRYPTION_KEY, secret_path
from rainbow.cli import app
from rainbow.parquet import ENCRYPT_ENV, read_frame, register_sources, row_count
from rainbow.settings import Lake
from rainbow.warehouse import connect_warehouse, open_reader, publish_views
from tests.lakefiles import read_parquet

NEW_KEY = "ab" * 32


def _restricted_files(lake: Lake) -> list[Path]:
    return [p for z in RESTRICTED_ZONES for p in sorted(lake.zone(z).rglob("*.parquet"))]


def test_every_file_of_the_restricted_zones_is_encrypted(library_lake: Lake) -> None:
    files = _restricted_files(library_lake)
    by_zone = {z: [f for f in files if library_lake.zone(z) in f.parents] for z in RESTRICTED_ZONES}
    assert all(len(v) >= 10 for v in by_zone.values()), {z: len(v) for z, v in by_zone.items()}
    ledger = [f for f in files if "_ledger" in f.parts]
    assert ledger and not any(is_encrypted(f) for f in ledger)  # file names and counts only
    plain = [f for f in files if f not in set(ledger) and not is_encrypted(f)]
    assert plain == []
    assert set(zone_files(library_lake, "raw")) == set(by_zone["raw"]) - set(ledger)


def test_no_identifier_is_readable_in_the_bytes_of_the_restricted_zones(library_lake: Lake) -> None:
    elders = read_parquet(library_lake.library / "dim_elder" / "data.parquet")
    ids = elders.get_column("id_number").drop_nulls().head(200).to_list()
    phones = elders.get_column("phone").drop_nulls().head(200).to_list()
    names = [n for n in elders.get_column("name").drop_nulls().head(200).to_list() if len(n) >= 3]
    needles = [s.encode() for s in ids + phones + names]
    # the same values do sit in plain text in the landing zone (so the scan below can find them)
    landing = b"".join(p.read_bytes() for p in library_lake.landing.rglob("*.csv"))
    assert sum(n in landing for n in needles) > len(needles) // 4
    for path in _restricted_files(library_lake):
        data = path.read_bytes()
        found = [n.decode() for n in needles if n in data]
        assert not found, f"{path} holds {found[:3]} in plain text"


def test_views_read_through_the_key_and_not_without_it(library_lake: Lake) -> None:
    dim = library_lake.library / "dim_elder" / "data.parquet"
    with connect_warehouse(library_lake, read_only=True) as con:
        row = con.execute("SELECT count(*) FROM library.dim_elder").fetchone()
        assert row is not None and row[0] == row_count(dim, library_lake) > 1000
        staged = con.execute("SELECT count(*) FROM staged.muni_elders").fetchone()
        assert staged is not None and staged[0] > 1000
    # a bare connection (no key) cannot bind the views, nor read the files
    with duckdb.connect(str(library_lake.warehouse), read_only=True) as bare:
        with pytest.raises(duckdb.Error):
            bare.execute("SELECT count(*) FROM library.dim_elder").fetchall()
        with pytest.raises(duckdb.Error, match=r"(?i)encrypt"):
            bare.execute(f"SELECT * FROM read_parquet('{dim}')").fetchall()
    with pytest.raises((OSError, pl.exceptions.ComputeError)):
        pl.read_parquet(dim)


def test_a_wrong_key_reads_nothing(library_lake: Lake, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENCRYPTION_KEY.env, NEW_KEY)  # not the key the lake was built with
    with pytest.raises((OSError, pa.ArrowException)):
        read_frame(library_lake.library / "dim_elder" / "data.parquet", library_lake)
    with pytest.raises((OSError, pa.ArrowException)):  # registering the views' sources fails already
        connect_warehouse(library_lake, read_only=True)
    # a dashboard's role connection says what is wrong instead of an Arrow error
    with pytest.raises(PermissionError, match=ENCRYPTION_KEY.env):
        open_role_connection(library_lake, "analyst", "wrong-key-1")


def test_rotate_key_re_encrypts_every_restricted_zone(
    library_lake: Lake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake = Lake(tmp_path / "lake")
    shutil.copytree(library_lake.root, lake.root)
    with connect_warehouse(lake) as con:  # the copy's views still name the original's files: repoint
        views = con.execute(
            "SELECT schema_name, view_name, sql FROM duckdb_views() "
            "WHERE NOT internal AND database_name = current_database()"
        ).fetchall()
        before = con.execute("SELECT count(*), count(DISTINCT id_number) FROM library.dim_elder").fetchone()
    old_root, new_root = str(library_lake.root), str(lake.root)
    repointed = [
        sql.replace(old_root, new_root).replace("CREATE VIEW", "CREATE OR REPLACE VIEW", 1)
        for *_, sql in views
    ]
    with duckdb.connect(str(lake.warehouse)) as con:
        register_sources(con, lake, repointed)
        for sql in repointed:
            con.execute(sql)
    dev_key = secret_path(lake, ENCRYPTION_KEY)
    assert dev_key.exists()
    monkeypatch.setenv(ENCRYPTION_KEY.env, NEW_KEY)
    monkeypatch.delenv("RAINBOW_ENCRYPTION_KEY_OLD", raising=False)
    result = CliRunner().invoke(app, ["rotate-key", "--lake", str(lake.root)])
    assert result.exit_code == 0, result.output
    assert "library:" in result.output and "re-encrypted" in result.output
    assert not dev_key.exists()  # from now on the key lives in the environment only
    with connect_warehouse(lake) as con:
        after = con.execute("SELECT count(*), count(DISTINCT id_number) FROM library.dim_elder").fetchone()
        publish_views(con, lake)
    assert after == before
    reader = open_reader(lake)  # the dashboards' lock-free reader, under the new key
    assert (
        reader.execute("SELECT count(*), count(DISTINCT id_number) FROM library.dim_elder").fetchone()
        == before
    )
    # running it again finds nothing to do; the old key no longer opens anything
    monkeypatch.setenv(
        "RAINBOW_ENCRYPTION_KEY_OLD", (library_lake.root / "secrets" / "encryption.key").read_text()
    )
    again = CliRunner().invoke(app, ["rotate-key", "--lake", str(lake.root), "--zone", "library"])
    assert again.exit_code == 0 and "0 re-encrypted" in again.output, again.output
    monkeypatch.setenv(
        ENCRYPTION_KEY.env, (library_lake.root / "secrets" / "encryption.key").read_text().strip()
    )
    with pytest.raises((OSError, pa.ArrowException)):
        read_frame(lake.library / "dim_elder" / "data.parquet", lake)
    # a dashboard over the published views (the old key in the environment) is told why
    with pytest.raises(PermissionError, match=rf"cannot decrypt the warehouse.*{ENCRYPTION_KEY.env}"):
        open_role_connection(lake, "analyst", "old-key-1")


def test_encryption_can_be_switched_off_for_comparisons(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rainbow.parquet import write_frame

    lake = Lake(tmp_path / "lake")
    frame = pl.DataFrame({"id_number": ["310110195001011234"]})
    on = lake.staged / "t" / "on.parquet"
    on.parent.mkdir(parents=True)
    write_frame(frame, on, lake)
    monkeypatch.setenv(ENCRYPT_ENV, "0")
    off = lake.staged / "t" / "off.parquet"
    write_frame(frame, off, lake)
    mart = lake.marts / "t" / "data.parquet"
    mart.parent.mkdir(parents=True)
    monkeypatch.delenv(ENCRYPT_ENV)
    write_frame(frame, mart, lake)
    assert is_encrypted(on) and not is_encrypted(off) and not is_encrypted(mart)
    assert read_frame([on, off], lake).height == 2
