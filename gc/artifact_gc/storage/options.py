"""``--storage-option KEY=VALUE``: fsspec keyword arguments given on the command line.

They are merged over what an artifact store's own configuration holds, for remote
stores only, and are never written anywhere (manifests keep no credentials).
"""

from __future__ import annotations

import copy
import json
from typing import Any

from artifact_gc.errors import UsageError

#: Values of these options stay strings whatever they look like (a secret "1234").
_STRING_OPTIONS = frozenset({"key", "secret", "token", "profile", "endpoint_url",
                             "region_name", "anon_key",
                             # GCS (gcsfs) and Azure (adlfs)
                             "project", "connection_string", "account_name", "account_key",
                             "sas_token", "account_host", "client_id", "client_secret",
                             "tenant_id"})


def parse_storage_options(pairs: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """Read ``--storage-option KEY=VALUE`` options into fsspec keyword arguments.

    Dotted keys build nested dicts (``client_kwargs.endpoint_url=http://...``);
    ``true``, ``false``, ``null`` and numbers are read as JSON, except for the values
    of credential-like keys, which stay strings.
    """
    options: dict[str, Any] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        parts = [p.strip() for p in name.split(".")]
        if not sep:
            # Without "=" the argument may well be a bare credential: never echo it.
            raise UsageError("--storage-option expects KEY=VALUE, got an argument without "
                             "'=' (not shown: it may be a secret)")
        if not all(parts):
            raise UsageError(f"--storage-option expects KEY=VALUE, got {name.strip()!r}=...")
        value: Any = raw
        if parts[-1] not in _STRING_OPTIONS and raw.strip().lower() in ("true", "false", "null"):
            value = json.loads(raw.strip().lower())
        elif parts[-1] not in _STRING_OPTIONS:
            try:
                number = json.loads(raw)
                if isinstance(number, int | float):
                    value = number
            except ValueError:
                pass
        target = options
        for part in parts[:-1]:
            nested = target.setdefault(part, {})
            if not isinstance(nested, dict):
                raise UsageError(f"--storage-option {name}: {part} is already a value")
            target = nested
        target[parts[-1]] = value
    return options


def merge_options(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``extra`` over ``base``, nested dicts merged key by key."""
    merged = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_options(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged
