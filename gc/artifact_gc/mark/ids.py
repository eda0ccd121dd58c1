"""Version ids in a mark: as DuckDB holds them (UUID), as the manifest spells them
(32 lowercase hex digits, as ZenML stores them), and ranges of the id space that cut
the work into parts of bounded size."""

from __future__ import annotations

#: DuckDB SQL for a UUID column as ZenML stores ids: 32 lowercase hex digits.
HEX = "replace(CAST({} AS VARCHAR), '-', '')"

#: Versions per part of a manifest's rows. A part's joins, its Arrow copy and its
#: Parquet row group stay this small, however large the store.
PART_ROWS = 131_072


def hex_id(column: str) -> str:
    """DuckDB SQL: the UUID ``column`` spelled as the manifest spells ids."""
    return HEX.format(column)


def id_ranges(versions: int, per_range: int = PART_ROWS) -> list[tuple[int | None, int | None]]:
    """Consecutive ranges of the 128-bit id space, ``[lo, hi)``, one per part.

    ZenML's ids are random (UUID4), so equal ranges hold about equal numbers of
    versions. The first range is open below and the last above: together they cover
    every id, whatever its distribution.
    """
    parts = max(1, -(-versions // per_range))
    bounds = [k * (1 << 128) // parts for k in range(1, parts)]
    return list(zip([None, *bounds], [*bounds, None], strict=True))


def sql_uuid(value: int | None) -> str:
    """DuckDB SQL: a range bound as a UUID literal (NULL for an open end)."""
    if value is None:
        return "NULL::UUID"
    digits = f"{value:032x}"
    return (f"'{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}'"
            "::UUID")


def in_range(column: str, lo: str | None, hi: str | None) -> str:
    """SQL: ``column`` lies in ``[lo, hi)``; a NULL bound is no bound."""
    if lo is None and hi is None:
        return "TRUE"
    return f"(({lo}) IS NULL OR {column} >= ({lo})) AND (({hi}) IS NULL OR {column} < ({hi}))"
