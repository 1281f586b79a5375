"""Every Parquet read and write of the lake, encrypted at rest where the zone is restricted.

The restricted zones (:data:`ENCRYPTED_ZONES`: raw, staged, library) hold names, ID
numbers, phones, addresses and health data. Their files are written with Parquet
modular encryption (AES-GCM, footer and every column, :mod:`masking.encryption`)
under a per-zone key derived from ``$RAINBOW_ENCRYPTION_KEY``; the marts (pseudonymous),
exports (de-identified, for their recipient) and the ingest ledger (file names,
checksums and counts; no personal data) stay plain.

Three doors, so no code path opens a restricted file on its own:

* :func:`write_frame` / :func:`write_batches`: Polars frames or DuckDB Arrow streams to a
  file; encrypted when the path lies in a restricted zone.
* :func:`read_frame`: one file or several into Polars; each file is decrypted when its
  footer says it is encrypted, so plain files of an older build still read.
* :func:`parquet_select` / :func:`register_sources`: DuckDB views. A view over encrypted
  files reads a *registered Arrow dataset* named ``"enc:<glob>"`` (DuckDB 2.0.1 cannot
  read PyArrow's encrypted files itself, see :mod:`masking.encryption`); the view's SQL
  holds only that name, never the key. Every connection registers the sources of the
  views it will read (:func:`register_sources` over the view DDL): the pipeline's
  warehouse connections, the library build, the catalogue and the dashboards' readers.
  A connection without the key cannot bind those views: it fails, it does not leak.

``RAINBOW_ENCRYPT_AT_REST=0`` writes plain files (for comparisons in benchmarks); reads
work either way. ``rainbow rotate-key --zone Z`` re-encrypts a zone under a new master key.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pyarrow.parquet.encryption as pe

from masking.encryption import (
    PLAIN_DIRS,
    ROW_GROUP_ROWS,
    encrypted_dataset,
    is_encrypted,
    open_encrypted,
    zone_key,
)
from masking.encryption import RESTRICTED_ZONES as ENCRYPTED_ZONES
from masking.secrets import ENCRYPTION_KEY, require_secret
from rainbow.io import commit_count, commits_since
from rainbow.settings import Lake

ARROW_POOL_ENV = "ARROW_DEFAULT_MEMORY_POOL"


def use_returning_arrow_pool() -> str:
    """Make PyArrow allocate from a pool that gives freed memory back; returns its name.

    PyArrow's default pool on Linux (mimalloc) keeps what it frees: the MEI's read of a year's
    ``elder_links`` (16.8 M rows, a 1.1 GB frame) left 1.2 GB resident after the Arrow table
    was freed, and the MEI's peak was 8.5 GB where it is 6.8 GB with Arrow's jemalloc pool
    (which returns freed pages after a second) at the same speed (benchmarks, seventh session).
    An explicit ``$ARROW_DEFAULT_MEMORY_POOL`` is left alone."""
    if not os.environ.get(ARROW_POOL_ENV):
        try:
            pa.set_memory_pool(pa.jemalloc_memory_pool())
        except NotImplementedError:  # a PyArrow built without jemalloc
            pa.set_memory_pool(pa.system_memory_pool())
    return pa.default_memory_pool().backend_name


use_returning_arrow_pool()

ENCRYPT_ENV = "RAINBOW_ENCRYPT_AT_REST"
SOURCE_PREFIX = "enc:"
_SOURCE_RE = re.compile(r'"enc:((?:[^"]|"")+)"')

_masters: dict[tuple[Path, str], bytes] = {}


def encryption_on() -> bool:
    """Are new files of the restricted zones encrypted? (``$RAINBOW_ENCRYPT_AT_REST``, default on)."""
    return os.environ.get(ENCRYPT_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def master_key(lake: Lake) -> bytes:
    """The encryption master key (environment, else the lake's development key), cached per lake."""
    cache = (lake.root, os.environ.get(ENCRYPTION_KEY.env, ""))
    if cache not in _masters:
        _masters[cache] = require_secret(lake, ENCRYPTION_KEY)
    return _masters[cache]


def restricted_zone(lake: Lake, path: Path) -> str | None:
    """The restricted zone ``path`` lies in (None: outside them, or in a plain folder)."""
    try:
        parts = Path(os.path.abspath(path)).relative_to(lake.root).parts
    except ValueError:
        return None
    if not parts or parts[0] not in ENCRYPTED_ZONES or PLAIN_DIRS.intersection(parts[1:]):
        return None
    return parts[0]


def _zone_key(lake: Lake, path: Path) -> bytes:
    """The key of an encrypted file: its zone's, in ``lake`` or, for a file of another lake
    (a copied warehouse's views still name the original's files), in the lake it lies in."""
    zone = restricted_zone(lake, path)
    if zone is None:
        home = next(
            (p.parent for p in Path(os.path.abspath(path)).parents if p.name in ENCRYPTED_ZONES), None
        )
        zone = restricted_zone(Lake(home), path) if home is not None else None
        if home is None or zone is None:
            raise ValueError(f"{path} is encrypted but lies in no restricted zone")
        lake = Lake(home)
    return zone_key(master_key(lake), zone)


def write_key(lake: Lake, path: Path) -> bytes | None:
    """The key a new file at ``path`` is encrypted under (None: written plain)."""
    zone = restricted_zone(lake, path)
    if zone is None or not encryption_on():
        return None
    return zone_key(master_key(lake), zone)


def write_frame(
    frame: pl.DataFrame,
    path: Path,
    lake: Lake,
    *,
    compression: str = "zstd",
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Write ``frame`` to ``path`` (callers rename a temporary path into place); ``metadata``:
    key-value pairs for the file's footer (:func:`file_metadata` reads them back)."""
    key = write_key(lake, path)
    if key is None and metadata is None:
        frame.write_parquet(path, compression=compression, statistics=True)  # type: ignore[arg-type]
        return
    table = frame.to_arrow()
    if metadata:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})
    write_batches(table, path, lake, key=key, compression=compression)


def file_metadata(path: Path, lake: Lake) -> dict[str, str]:
    """The key-value pairs a writer put in the file's footer (decrypting it when encrypted)."""
    with parquet_file(path, lake) as f:
        raw = f.schema_arrow.metadata or {}
    return {k.decode(): v.decode() for k, v in raw.items() if not k.startswith(b"ARROW:")}


def write_batches(
    data: pa.Table | pa.RecordBatchReader,
    path: Path,
    lake: Lake,
    *,
    key: bytes | None = None,
    compression: str = "zstd",
    metadata: Mapping[str, str] | None = None,
) -> int:
    """Write an Arrow table or stream (e.g. a DuckDB result) to ``path``; returns rows written.
    ``metadata``: key-value pairs for the file's footer (:func:`file_metadata`)."""
    schema = data.schema.with_metadata(dict(metadata)) if metadata else data.schema
    with open_writer(path, schema, lake, key=key, compression=compression) as w:
        if isinstance(data, pa.Table):
            w.write_table(data, row_group_size=ROW_GROUP_ROWS)
            return data.num_rows
        return copy_batches(data, w)


def copy_batches(reader: pa.RecordBatchReader, writer: pq.ParquetWriter) -> int:
    """Every non-empty batch of ``reader`` into ``writer`` (left open); returns rows written."""
    rows = 0
    for batch in reader:
        if batch.num_rows:
            writer.write_batch(batch, row_group_size=ROW_GROUP_ROWS)
            rows += batch.num_rows
    return rows


def open_writer(
    path: Path, schema: pa.Schema, lake: Lake, *, key: bytes | None = None, compression: str = "zstd"
) -> pq.ParquetWriter:
    """A Parquet writer for ``path``, encrypting when the path lies in a restricted zone."""
    key = key if key is not None else write_key(lake, path)
    props = pe.create_encryption_properties(key) if key is not None else None
    return pq.ParquetWriter(
        path,
        schema,
        compression=compression,
        encryption_properties=props,
        use_dictionary=dictionary_columns(schema),
    )


# a source row's number: distinct in every row of a file
ROW_NUMBER_COLUMN = "_row_number"


def dictionary_columns(schema: pa.Schema) -> list[str]:
    """The columns written with dictionary encoding (Parquet column paths: a list column's
    values are ``<name>.list.element``): all but floating-point ones, unsigned 64-bit ones (the
    row hashes of the checks' ledgers) and the row number, whose values are nearly all
    distinct, so the writer builds a dictionary only to abandon it at its size limit. A district
    day of staged water readings: written 152 -> 123 ms, read 65 -> 41 ms, 8.5 -> 5.3 MB
    (vitals: 42 -> 36 ms, read alike, 5% larger); the year's ``elder_links`` ledger (16.8 M x 2
    hashes): written 1.86 -> 0.64 s, read 1.07 -> 0.26 s, 336 -> 270 MB."""
    return [
        p for field in schema if field.name != ROW_NUMBER_COLUMN for p in _leaf_paths(field.name, field.type)
    ]


def _leaf_paths(prefix: str, dtype: pa.DataType) -> list[str]:
    """Parquet column paths under a field, but for floating-point and unsigned 64-bit leaves."""
    if pa.types.is_list(dtype) or pa.types.is_large_list(dtype):
        return _leaf_paths(f"{prefix}.list.element", dtype.value_type)
    if pa.types.is_struct(dtype):
        return [p for f in dtype for p in _leaf_paths(f"{prefix}.{f.name}", f.type)]
    return [] if pa.types.is_floating(dtype) or pa.types.is_uint64(dtype) else [prefix]


def parquet_file(path: Path, lake: Lake) -> pq.ParquetFile:
    """An open ``ParquetFile`` (decrypting when the file is encrypted)."""
    return open_encrypted(path, _zone_key(lake, path)) if is_encrypted(path) else pq.ParquetFile(path)


def row_count(path: Path, lake: Lake) -> int:
    with parquet_file(path, lake) as f:
        return int(f.metadata.num_rows)


def read_frame(
    paths: Path | Sequence[Path], lake: Lake, *, columns: Sequence[str] | None = None
) -> pl.DataFrame:
    """One file, or several concatenated (``diagonal_relaxed``), as a Polars frame.

    ``columns`` a file lacks (written before the column existed) come back as nulls.
    """
    files = [paths] if isinstance(paths, Path) else list(paths)
    if not files:
        raise ValueError("read_frame needs at least one file")
    frames = []
    for path in files:
        with parquet_file(path, lake) as f:
            names = f.schema_arrow.names
            want = None if columns is None else [c for c in columns if c in names]
            table = f.read(columns=want)
        # the row groups as they were read: a rechunk copies every column into one chunk,
        # holding it twice for a moment (not measured on its own)
        frame = pl.from_arrow(table, rechunk=False)
        assert isinstance(frame, pl.DataFrame)
        if columns is not None:
            frame = frame.with_columns(
                pl.lit(None).alias(c) for c in columns if c not in frame.columns
            ).select(list(columns))
        frames.append(frame)
    return frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal_relaxed")


# --------------------------------------------------------------------------- DuckDB


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class _Listings:
    """Globs listed and files stat'ed in one :func:`listing_scope`; a glob's entries are
    dropped when this process commits a file under the glob's folder."""

    def __init__(self) -> None:
        self.commits = commit_count()
        self.globs: dict[str, tuple[Path, ...]] = {}
        self.stats: dict[str, tuple[tuple[str, int, int], ...]] = {}
        self.folders: dict[str, str] = {}  # glob -> real path of its fixed folder (+ separator)

    def current(self) -> _Listings:
        new = commits_since(self.commits)
        if new:
            self.commits += len(new)
            for key, folder in list(self.folders.items()):
                if any(path.startswith(folder) for path in new):
                    del self.folders[key]
                    self.globs.pop(key, None)
                    self.stats.pop(key, None)
        return self

    def remember(self, glob: Path) -> str:
        key = str(glob)
        if key not in self.folders:
            self.folders[key] = os.path.join(os.path.realpath(_fixed_folder(glob)), "")
        return key


_scope: ContextVar[_Listings | None] = ContextVar("rainbow_listings", default=None)


@contextlib.contextmanager
def listing_scope() -> Iterator[None]:
    """Within the block, each glob is listed (and its files stat'ed) once, until this process
    commits a file under the glob's folder (:func:`rainbow.io.atomic_path`): a nightly build
    registers every view's files on every step's connection, then again per table it
    (re)creates views for. Outside a scope (the dashboards' long-lived readers) every call
    lists afresh. Files another process writes meanwhile are seen from the next scope on."""
    if _scope.get() is not None:
        yield
        return
    token = _scope.set(_Listings())
    try:
        yield
    finally:
        _scope.reset(token)


def glob_files(glob: Path) -> list[Path]:
    """The Parquet files a DuckDB glob such as ``<dir>/**/*.parquet`` matches (no temporary files)."""
    scope = _scope.get()
    if scope is None:
        return _glob_files(glob)
    listings = scope.current()
    key = listings.remember(glob)
    if key not in listings.globs:
        listings.globs[key] = tuple(_glob_files(glob))
    return list(listings.globs[key])


def _file_stats(glob: Path, files: list[Path]) -> tuple[tuple[str, int, int], ...]:
    scope = _scope.get()
    listings = scope.current() if scope is not None else None
    if listings is not None and str(glob) in listings.stats:
        return listings.stats[str(glob)]
    stats = tuple((f, s.st_size, s.st_mtime_ns) for f in map(str, files) for s in (os.stat(f),))
    if listings is not None:
        listings.stats[listings.remember(glob)] = stats
    return stats


def _fixed_folder(glob: Path) -> Path:
    """The folder a glob's wildcards start below (a plain path: its folder)."""
    text = str(glob)
    star = min((i for i in (text.find("*"), text.find("?"), text.find("[")) if i >= 0), default=-1)
    if star < 0:
        return glob.parent
    return Path(text[:star]).parent if not text[:star].endswith(os.sep) else Path(text[:star])


def _glob_files(glob: Path) -> list[Path]:
    text = str(glob)
    if not any(c in text for c in "*?["):
        return [glob] if glob.exists() else []
    base = _fixed_folder(glob)
    pattern = str(Path(text).relative_to(base))
    parts = pattern.split(os.sep)
    if len(parts) == 1 or (len(parts) == 2 and parts[0] == "**" and "**" not in parts[1]):
        # The lake's own globs (<dir>/*.parquet, <dir>/**/*.parquet): a plain scandir walk.
        # pathlib's glob cost 50 s of a 170 s incremental build over a year of day folders
        # (every connection registers every view's files).
        names = re.compile(fnmatch.translate(parts[-1])).match
        found = _scan(str(base), names, recursive=len(parts) == 2)
        return [Path(f) for f in sorted(found, key=lambda f: f.split(os.sep))]
    return sorted(p for p in base.glob(pattern) if p.is_file() and not p.name.startswith("."))


def _scan(base: str, names: Callable[[str], object], *, recursive: bool) -> list[str]:
    """Files under ``base`` (every level when ``recursive``, not into linked folders) whose
    name matches and does not start with a dot - what ``Path.glob`` then ``is_file`` keep."""
    out: list[str] = []
    stack = [base]
    while stack:
        try:
            entries = os.scandir(stack.pop())
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        with entries:
            for e in entries:
                if recursive and e.is_dir() and not e.is_symlink():
                    stack.append(e.path)
                elif not e.name.startswith(".") and names(e.name) and e.is_file():
                    out.append(e.path)
    return out


def source_name(glob: Path) -> str:
    return SOURCE_PREFIX + str(glob)


def quoted_source(glob: Path) -> str:
    return '"' + source_name(glob).replace('"', '""') + '"'


def parquet_from(glob: Path, *, options: str = "union_by_name = true") -> str:
    """The FROM item of a view over ``glob``: ``read_parquet(...)``, or the encrypted source's name."""
    files = glob_files(glob)
    if files and any(is_encrypted(f) for f in (files[0], files[-1])):
        return quoted_source(glob)
    return f"read_parquet({_literal(str(glob))}{', ' + options if options else ''})"


def encrypted_source(files: list[Path], lake: Lake) -> ds.Dataset:
    """One Arrow dataset over ``files``, decrypting those that are encrypted.

    Its schema is the newest file's (contracts only add columns; an older file lacking
    one reads it as NULL, like DuckDB's ``union_by_name``).
    """
    enc = [f for f in files if is_encrypted(f)]
    encrypted = set(enc)
    plain = [f for f in files if f not in encrypted]
    newest = files[-1]
    with parquet_file(newest, lake) as f:
        schema = f.schema_arrow
    parts: list[ds.Dataset] = []
    if enc:
        parts.append(encrypted_dataset(enc, _zone_key(lake, enc[0]), schema))
    if plain:
        parts.append(ds.dataset([str(f) for f in plain], format="parquet", schema=schema))
    return parts[0] if len(parts) == 1 else ds.dataset(parts, schema=schema)


def source_globs(sql: str) -> list[Path]:
    """The globs of the encrypted sources an SQL text reads."""
    return sorted({Path(m.replace('""', '"')) for m in _SOURCE_RE.findall(sql)})


def register_sources(con: duckdb.DuckDBPyConnection, lake: Lake, sql: str | Iterable[str]) -> int:
    """Register (again: the file list is read now) every encrypted source ``sql`` reads on ``con``.

    Returns the number registered; a source whose files are gone is skipped (its views
    then fail to bind, like a ``read_parquet`` over a missing file).
    """
    text = sql if isinstance(sql, str) else "\n".join(sql)
    n = 0
    for glob in source_globs(text):
        files = glob_files(glob)
        if not files:
            continue
        con.register(source_name(glob), _cached_source(glob, files, lake))
        n += 1
    return n


_sources: dict[Path, tuple[tuple[object, ...], ds.Dataset]] = {}


def _cached_source(glob: Path, files: list[Path], lake: Lake) -> ds.Dataset:
    """The dataset of ``glob``, reused while its files (path, size, mtime) and the key are unchanged:
    every step of a build opens connections, and building a dataset reads every file's footer magic."""
    signature = (master_key(lake), _file_stats(glob, files))
    hit = _sources.get(glob)
    if hit is not None and hit[0] == signature:
        return hit[1]
    dataset = encrypted_source(files, lake)
    _sources[glob] = (signature, dataset)
    return dataset


def register_view_sources(con: duckdb.DuckDBPyConnection, lake: Lake) -> int:
    """Register the encrypted sources of every view the connection's database holds."""
    rows = con.execute(
        "SELECT sql FROM duckdb_views() WHERE NOT internal AND database_name = current_database()"
    ).fetchall()
    return register_sources(con, lake, [str(r[0]) for r in rows])
