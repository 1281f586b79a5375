"""Encryption at rest of the restricted zones: Parquet modular encryption (AES-GCM).

The restricted zones are raw, staged and library (names, ID numbers, phones, addresses,
health). Every writer and reader of the lake goes through :mod:`rainbow.parquet`, which
encrypts with the functions here; the marts (pseudonymous), exports and the ingest
ledger (file names and counts) stay plain.

Why Parquet encryption and not DuckDB database encryption: the warehouse holds views,
the data lives in Parquet files. Who encrypts and who decrypts, with DuckDB 2.0.1:

* DuckDB cannot *write* securely: the wheel carries a read-only crypto module; writing an
  encrypted file or database needs the OpenSSL-backed ``httpfs`` extension (not
  installable offline; PyPI's ``duckdb-extension-httpfs`` stops at 1.5.5) or
  ``force_mbedtls_unsafe``, whose nonces do not come from a secure random source (fatal
  for AES-GCM).
* DuckDB cannot *read* PyArrow's encrypted files reliably: a file of more than one row
  group or page fails with "Computed AES tag differs", whatever the page and dictionary
  settings (``test_duckdb_native_read_of_arrow_encrypted_files`` is a strict xfail that
  starts passing when a DuckDB release fixes it).
* So PyArrow writes (OpenSSL) and PyArrow reads: DuckDB scans a ``pyarrow.dataset`` over
  a table's files with the key in its scan options, with projection and filter pushdown
  (also on a sandboxed connection, since PyArrow, not DuckDB, opens the files). The key
  never appears in SQL.

Keys: one master key (``$RAINBOW_ENCRYPTION_KEY``, see :mod:`masking.secrets`); each zone
encrypts under its own key derived from it (HMAC-SHA256(master, "rainbow/parquet-zone/"
+ zone), 256 bits), so one zone's files never share a key with another's. Files are
uniformly encrypted (footer and every column, AES_GCM_V1): without the key not even the
schema can be read.

Rotation (:func:`rotate_zone_key`) re-encrypts every file of a zone from the old master
to the new one, each file atomically (temporary sibling, then rename). It first checks
that every encrypted file opens under the old or the new key, so a wrong key changes
nothing; a file already under the new key is skipped, so an interrupted rotation is
finished by running it again.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pyarrow.parquet.encryption as pe

from rainbow.io import atomic_path
from rainbow.settings import Lake

RESTRICTED_ZONES = ("raw", "staged", "library")
PLAIN_DIRS = frozenset({"_ledger"})  # the ingest ledger: file names, checksums, counts; no personal data
_INFO = b"rainbow/parquet-zone/"
PARQUET_MAGIC = b"PAR1"
ENCRYPTED_MAGIC = b"PARE"  # encrypted footer
ROW_GROUP_ROWS = 122_880  # DuckDB's default row group size


def zone_key(master: bytes, zone: str) -> bytes:
    """The 256-bit key of one zone, derived from the master key."""
    if len(master) < 32:
        raise ValueError("the encryption master key must be at least 32 bytes")
    return hmac.new(master, _INFO + zone.encode("ascii"), hashlib.sha256).digest()


def is_encrypted(path: Path) -> bool:
    """Does the file have an encrypted footer (magic ``PARE``)?"""
    with path.open("rb") as f:
        f.seek(-4, os.SEEK_END)
        magic = f.read(4)
    if magic not in (PARQUET_MAGIC, ENCRYPTED_MAGIC):
        raise ValueError(f"{path} is not a Parquet file")
    return magic == ENCRYPTED_MAGIC


def write_encrypted_parquet(
    data: pa.Table | pl.DataFrame | pa.RecordBatchReader,
    path: Path,
    key: bytes,
    *,
    compression: str = "zstd",
    row_group_size: int = ROW_GROUP_ROWS,
) -> int:
    """Write ``data`` encrypted under ``key`` (16/24/32 bytes) atomically; returns rows written.

    Row groups of DuckDB's default size keep scans parallel and let filters skip groups."""
    props = pe.create_encryption_properties(key)
    if isinstance(data, pl.DataFrame):
        data = data.to_arrow()
    rows = 0
    with atomic_path(path) as tmp:
        schema = data.schema
        with pq.ParquetWriter(tmp, schema, compression=compression, encryption_properties=props) as w:
            if isinstance(data, pa.Table):
                w.write_table(data, row_group_size=row_group_size)
                rows = data.num_rows
            else:
                for batch in data:
                    w.write_batch(batch, row_group_size=row_group_size)
                    rows += batch.num_rows
    return rows


def open_encrypted(path: Path, key: bytes) -> pq.ParquetFile:
    return pq.ParquetFile(path, decryption_properties=pe.create_decryption_properties(key))


def read_encrypted_parquet(path: Path, key: bytes) -> pa.Table:
    """The whole file; a wrong or missing key raises (the AES-GCM tags do not match)."""
    return open_encrypted(path, key).read()


def table_files(lake: Lake, zone: str, table: str) -> list[Path]:
    """The Parquet files of one table (``<lake>/<zone>/<table>/**/*.parquet``)."""
    root = lake.zone(zone) / table
    return sorted(p for p in root.rglob("*.parquet") if not p.name.startswith(".")) if root.exists() else []


def is_encrypted_table(lake: Lake, zone: str, table: str) -> bool:
    """Are the table's files encrypted? (Judged by the first; a zone is switched as a whole.)"""
    files = table_files(lake, zone, table)
    return bool(files) and is_encrypted(files[0])


def encrypted_dataset(files: list[Path], key: bytes, schema: pa.Schema | None = None) -> ds.Dataset:
    """A ``pyarrow.dataset`` over encrypted files that decrypts with ``key`` as it scans
    (``schema``: the dataset's, else the first file's)."""
    options = ds.ParquetFragmentScanOptions(decryption_properties=pe.create_decryption_properties(key))
    fmt = ds.ParquetFileFormat(default_fragment_scan_options=options)
    return ds.dataset([str(f) for f in files], format=fmt, schema=schema)


def register_encrypted_table(
    con: duckdb.DuckDBPyConnection, name: str, lake: Lake, zone: str, table: str, master: bytes
) -> None:
    """Make a table's encrypted files queryable on ``con`` as ``name`` (a registered Arrow dataset)."""
    files = table_files(lake, zone, table)
    if not files:
        raise FileNotFoundError(f"no Parquet files under {lake.zone(zone) / table}")
    con.register(name, encrypted_dataset(files, zone_key(master, zone)))


def _reencrypt(path: Path, old: bytes | None, new: bytes) -> None:
    """Rewrite one file under ``new`` (``old`` None: the file is plain), row group by row group."""
    src = open_encrypted(path, old) if old is not None else pq.ParquetFile(path)
    props = pe.create_encryption_properties(new)
    try:
        with (
            atomic_path(path) as tmp,
            pq.ParquetWriter(tmp, src.schema_arrow, compression="zstd", encryption_properties=props) as w,
        ):
            for i in range(src.num_row_groups):
                w.write_table(src.read_row_group(i))
    finally:
        src.close()


@dataclass
class Rotation:
    zone: str
    rotated: list[Path] = field(default_factory=list)
    already_new: list[Path] = field(default_factory=list)
    encrypted_now: list[Path] = field(default_factory=list)  # plain files encrypted (encrypt_plain)
    plain: list[Path] = field(default_factory=list)  # plain files left alone


def _opens(path: Path, key: bytes) -> bool:
    try:
        open_encrypted(path, key).close()
    except (OSError, pa.ArrowException):
        return False
    return True


def zone_files(lake: Lake, zone: str) -> list[Path]:
    """Every Parquet file under a zone that is encrypted (temporary files and plain folders excluded)."""
    root = lake.zone(zone)
    if not root.exists():
        return []
    return sorted(
        p
        for p in root.rglob("*.parquet")
        if not p.name.startswith(".") and not PLAIN_DIRS.intersection(p.relative_to(root).parts)
    )


def rotate_zone_key(
    lake: Lake, zone: str, old_master: bytes, new_master: bytes, *, encrypt_plain: bool = False
) -> Rotation:
    """Re-encrypt every file of ``zone`` from ``old_master`` to ``new_master`` (see module doc).

    Plain files are left alone unless ``encrypt_plain`` (then they are encrypted under the
    new key: the way to switch a zone to encryption). Raises before changing anything if
    a file opens under neither key.
    """
    if zone not in RESTRICTED_ZONES:
        raise ValueError(f"zone {zone!r} is not encrypted; expected one of {RESTRICTED_ZONES}")
    old, new = zone_key(old_master, zone), zone_key(new_master, zone)
    result = Rotation(zone)
    todo: list[tuple[Path, bytes | None]] = []
    unreadable: list[Path] = []
    for path in zone_files(lake, zone):
        if not is_encrypted(path):
            if encrypt_plain:
                todo.append((path, None))
            else:
                result.plain.append(path)
        elif _opens(path, new):
            result.already_new.append(path)
        elif _opens(path, old):
            todo.append((path, old))
        else:
            unreadable.append(path)
    if unreadable:
        raise ValueError(
            f"{len(unreadable)} file(s) of {zone}/ open under neither key, nothing changed: "
            + ", ".join(str(p) for p in unreadable[:5])
        )
    for path, key in todo:
        _reencrypt(path, key, new)
        (result.rotated if key is not None else result.encrypted_now).append(path)
    return result
