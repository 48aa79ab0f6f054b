"""Parquet manifests -> rows, one row group at a time (pyarrow, the parquet extra)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import IO, Any

from .._exceptions import ManifestError
from .fields import FIELDS

PARQUET_HINT = "pip install 'downloader[parquet]'"
BATCH_ROWS = 8192  # rows turned into dicts at a time: memory stays flat


def field_columns(names: Sequence[str]) -> dict[str, str]:
    """Which column holds each field: the one named exactly, else in other case.

    Datasets name their columns as they like (LAION's ``URL``, DataComp's
    ``url``), so letter case is forgiven when only one column matches.
    Columns that are no field (captions, image sizes...) are not read at all.
    """
    found: dict[str, str] = {}
    for field in FIELDS:
        if field in names:
            found[field] = field
            continue
        folded = [name for name in names if name.casefold() == field]
        if len(folded) == 1:
            found[field] = folded[0]
    return found


def parquet_rows(file: IO[bytes], source: str) -> Iterator[tuple[int, Any]]:
    """``(row, fields)`` for each row (counting from 1), read a batch at a time.

    Raises
    ------
    ManifestError
        pyarrow is missing, the file is not parquet, it has no url column, or
        it is damaged (naming the row reached).
    """
    try:
        import pyarrow.parquet as pq
    except ImportError:
        msg = f"reading parquet manifests needs pyarrow: {PARQUET_HINT}"
        raise ManifestError(msg, source=source) from None
    try:
        table = pq.ParquetFile(file)
    except Exception as exc:  # pyarrow's errors have no common base
        msg = f"not a readable parquet file: {exc}"
        raise ManifestError(msg, source=source) from None
    names = list(table.schema_arrow.names)
    columns = field_columns(names)
    if "url" not in columns:
        have = ", ".join(repr(n) for n in names) or "none"
        msg = f"no 'url' column (its columns: {have})"
        raise ManifestError(msg, source=source)
    return _rows(table, columns, source)


def _rows(
    table: Any, columns: dict[str, str], source: str
) -> Iterator[tuple[int, Any]]:
    wanted = list(dict.fromkeys(columns.values()))
    row = 0
    batches = table.iter_batches(batch_size=BATCH_ROWS, columns=wanted)
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except Exception as exc:  # a damaged page, in pyarrow's words
            msg = f"damaged parquet data at or after this row: {exc}"
            raise ManifestError(msg, source=source, line=row + 1) from None
        for values in batch.to_pylist():
            row += 1
            yield row, _fields(values, columns)


def _fields(values: dict[str, Any], columns: dict[str, str]) -> dict[str, Any]:
    fields = {field: values[column] for field, column in columns.items()}
    headers = fields.get("headers")
    if isinstance(headers, list) and all(  # a map column: (key, value) pairs
        isinstance(pair, tuple) and len(pair) == 2 for pair in headers
    ):
        fields["headers"] = dict(headers)
    return fields
