"""Options that several commands share, declared once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def duration(_ctx: click.Context, _param: click.Parameter, value: str) -> Any:
    """click callback: a human duration (``24h``, ``7d``) as a timedelta. A bare ``0``
    needs no unit: zero is zero in every unit."""
    from datetime import timedelta

    from artifact_gc.durations import parse_duration
    from artifact_gc.errors import UsageError

    if value.strip() == "0":
        return timedelta(0)
    try:
        return parse_duration(value)
    except UsageError as exc:
        raise click.BadParameter(exc.message) from exc


def glob_patterns(_ctx: click.Context, param: click.Parameter,
                  value: tuple[str, ...]) -> tuple[str, ...]:
    """click callback: artifact-name globs that mean what they say.

    fnmatch quietly reads an unclosed ``[`` as a literal and a reversed range as
    "nothing"; either is a typo that would silently change what is in scope.
    """
    import fnmatch

    name = f"--{(param.name or '').replace('_', '-')}".removesuffix("s")
    for pattern in value:
        if not pattern.strip():
            raise click.BadParameter("an empty glob matches no artifact name",
                                     param_hint=name)
        i = 0
        while i < len(pattern):
            if pattern[i] == "[":
                j = i + 1
                if j < len(pattern) and pattern[j] == "!":
                    j += 1
                if j < len(pattern) and pattern[j] == "]":
                    j += 1
                end = pattern.find("]", j)
                if end < 0:
                    raise click.BadParameter(
                        f"{pattern!r} has a '[' without a closing ']' (write [[] for a "
                        "literal '[')", param_hint=name)
                i = end
            i += 1
        if fnmatch.translate(pattern).count("(?!)"):
            raise click.BadParameter(
                f"{pattern!r} has a character range that is empty (like [z-a])",
                param_hint=name)
    return value


def storage_option(command: F) -> F:
    """``--storage-option KEY=VALUE`` (repeatable), into ``storage_option_pairs``."""
    return click.option(
        "--storage-option", "storage_option_pairs", multiple=True, metavar="KEY=VALUE",
        help="fsspec option for remote artifact stores and manifests (s3://...), over "
             "the component's configuration; dotted keys nest, e.g. "
             "client_kwargs.endpoint_url=http://127.0.0.1:9000 (repeatable). Never "
             "written anywhere.",
    )(command)


def object_store_options(command: F) -> F:
    """``--storage-option KEY=VALUE`` and ``--max-requests-per-second N``."""
    command = click.option(
        "--max-requests-per-second", type=click.FloatRange(min=0, min_open=True),
        metavar="N", help="Rate limit on requests to each artifact store (shared buckets). "
                          "On S3 every LIST and DeleteObjects request counts, and throttling "
                          "slows down further by itself. On other stores (local disks and "
                          "mounts, or any fsspec filesystem) every path the sweep deletes "
                          "counts as one request; there gc mark --sizes is not limited.",
    )(command)
    return storage_option(command)
