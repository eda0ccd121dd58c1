"""How ZenML writes values into its store: ids, timestamps, base64 JSON, store roots."""

from __future__ import annotations

import base64
import json
import random
from datetime import datetime
from typing import Any

#: ZenML's storage format for naive UTC datetimes.
TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S.%f"

#: One row's values, in the order of the columns given to the writer.
Row = tuple[Any, ...]

_UUID4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID4_SET = (0x4000 << 64) | (0x8000 << 48)


def new_id(rng: random.Random) -> str:
    """A version-4 UUID as ZenML stores it (32 lowercase hex, no dashes), from ``rng``."""
    return f"{(rng.getrandbits(128) & _UUID4_CLEAR) | _UUID4_SET:032x}"


def dashed(hex_id: str) -> str:
    """The dashed form of a 32-hex id, as ZenML writes ids into JSON and paths."""
    h = hex_id
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def timestamp(moment: datetime) -> str:
    """``moment`` in ``TIMESTAMP_FORMAT``."""
    # Same text as strftime(TIMESTAMP_FORMAT), several times faster.
    return moment.isoformat(" ", "microseconds")


def b64json(value: Any) -> bytes:
    """``value`` as a base64-encoded JSON blob (stack component configuration, labels)."""
    return base64.b64encode(json.dumps(value).encode())


def flavor(root: str) -> str:
    """The artifact store flavor that serves ``root``."""
    scheme = root.split("://", 1)[0] if "://" in root else ""
    flavors = {"": "local", "file": "local", "s3": "s3", "gs": "gcp", "az": "azure"}
    return flavors.get(scheme, scheme)


def is_local(root: str) -> bool:
    return "://" not in root or root.startswith("file://")


def local_path(root: str) -> str:
    return root[len("file://") :] if root.startswith("file://") else root
