"""A deleted row as text that brings back exactly the values the driver gave.

Rows are read with plain SQL (no SQLAlchemy type processing), so each value is what
the database driver returned: ``str``, ``int``, ``float``, ``bytes``, ``datetime``,
``date``, ``time``, ``Decimal``, ``bool`` or ``None``. JSON keeps the first ones as
they are; the others are tagged (``{"$dt": "..."}``) and come back as the same type
with the same value (microseconds, bytes, decimal digits), so a restored row is
equal to the deleted one column for column.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any


def _encode(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        # repr round-trips every float; JSON has no NaN or infinity.
        return {"$f": repr(value)}
    if isinstance(value, datetime):
        return {"$dt": value.isoformat()}
    if isinstance(value, date):
        return {"$d": value.isoformat()}
    if isinstance(value, time):
        return {"$t": value.isoformat()}
    if isinstance(value, Decimal):
        return {"$dec": str(value)}
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$b": base64.b64encode(bytes(value)).decode("ascii")}
    raise TypeError(f"cannot keep a value of type {type(value).__name__} for undo")


def _decode(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    ((tag, text),) = value.items()
    if tag == "$f":
        return float(text)
    if tag == "$dt":
        return datetime.fromisoformat(text)
    if tag == "$d":
        return date.fromisoformat(text)
    if tag == "$t":
        return time.fromisoformat(text)
    if tag == "$dec":
        return Decimal(text)
    if tag == "$b":
        return base64.b64decode(text)
    raise ValueError(f"unknown value tag {tag!r} in an undo segment")


#: What ``json.dumps(..., separators=(",", ":"), ensure_ascii=False)`` would build
#: anew for every row (a sweep keeps thousands of rows per batch).
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
#: The types JSON keeps as they are (what :func:`_encode` returns unchanged).
_AS_IS = frozenset({str, int, bool, type(None)})


def encode_row(columns: Sequence[str], values: Sequence[Any]) -> str:
    """One row as JSON text: column -> tagged value."""
    if _AS_IS.issuperset(map(type, values)):
        # Nothing to tag (most rows read from SQLite, which keeps datetimes as text).
        return _ENCODER.encode(dict(zip(columns, values, strict=True)))
    return _ENCODER.encode({c: v if type(v) in _AS_IS else _encode(v)
                            for c, v in zip(columns, values, strict=True)})


def decode_row(text: str) -> dict[str, Any]:
    """The row :func:`encode_row` wrote, with its original values."""
    return {c: _decode(v) for c, v in json.loads(text).items()}


def same_value(kept: Any, live: Any) -> bool:
    """Whether a kept value and the value the database holds now are the same (a
    driver may hand back a ``memoryview`` or an ``int`` where it was given ``bytes``
    or a ``bool``)."""
    if isinstance(live, memoryview | bytearray):
        live = bytes(live)
    if isinstance(kept, bool) or isinstance(live, bool):
        return kept is not None and live is not None and int(kept) == int(live)
    return bool(kept == live)
