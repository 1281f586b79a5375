"""landing -> raw ingest: pure functions (no Dagster).

* :mod:`assets.ingest.readers` - read one delivered file into text columns;
* :mod:`assets.ingest.ledger` - which file (by checksum) became which raw part;
* :mod:`assets.ingest.raw` - discover, ingest and reconcile a table's files;
* :mod:`assets.ingest.views` - DuckDB views over the raw Parquet parts.
"""

from assets.ingest.raw import IngestReport, ingest_table, reconcile_table
from assets.ingest.readers import Delivered, ReadError, read_delivery

__all__ = ["Delivered", "IngestReport", "ReadError", "ingest_table", "read_delivery", "reconcile_table"]
