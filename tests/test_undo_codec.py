"""The undo codec's row text: the same bytes ``json.dumps`` gave before its encoder was
kept across rows, for every type a driver hands back."""

from __future__ import annotations

import json
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

from artifact_gc.undo.codec import _encode, decode_row, encode_row


class Text(str):
    pass


class Number(int):
    pass


ROWS: list[list[Any]] = [
    ["abc", 1, True, None, 1.5, datetime(2026, 1, 2, 3, 4, 5, 6), date(2026, 1, 2),
     time(1, 2, 3), Decimal("1.20"), b"\x00\xff", Text("x"), Number(3)],
    ["é\u2028\"\\", -10**30, False, "", float("nan"), memoryview(b"ab"), bytearray(b"c"),
     None, None, None, "[x]", 0],
]


def test_rows_encode_as_json_dumps_did() -> None:
    columns = [f"c{i}" for i in range(12)]
    for values in ROWS:
        before = json.dumps({c: _encode(v) for c, v in zip(columns, values, strict=True)},
                            separators=(",", ":"), ensure_ascii=False)
        assert encode_row(columns, values) == before
        decoded = decode_row(encode_row(columns, values))
        assert decoded["c0"] == values[0] and decoded["c1"] == values[1]
