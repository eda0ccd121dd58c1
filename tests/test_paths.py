"""The lexical path rules: Python and DuckDB agree on hostile paths, and say what we mean.

``artifact_gc.paths`` generates both renderings of each rule from one expression tree;
these tests run both over the same table and compare every answer.
"""

from __future__ import annotations

import itertools
import random

import duckdb
import pytest

from artifact_gc.paths import (
    INSIDE_ROOT,
    OVERLAP,
    directory_key,
    directory_key_sql,
    inside_root,
    paths_overlap,
)

ROOT = "/srv/store"

#: (path, root, inside?): what the root rule must answer, spelled out.
INSIDE_CASES: list[tuple[str | None, str | None, bool]] = [
    ("/srv/store/a", ROOT, True),
    ("/srv/store/a/b/c", ROOT, True),
    ("/srv/store/a/", ROOT, True),
    ("/srv/store/a//", ROOT, True),
    ("/srv/store//a", ROOT, True),
    ("/srv/store/a", ROOT + "/", True),
    ("/srv/store/a", ROOT + "//", True),
    # the root itself, however spelled, is not inside it
    ("/srv/store", ROOT, False),
    ("/srv/store/", ROOT, False),
    ("/srv/store//", ROOT, False),
    ("/srv/store", ROOT + "/", False),
    # sibling prefixes
    ("/srv/store2", ROOT, False),
    ("/srv/store2/a", ROOT, False),
    ("/srv/storea", ROOT, False),
    ("/srv/stor", ROOT, False),
    ("/srv", ROOT, False),
    # dot segments, anywhere, climb out of or name the root
    ("/srv/store/..", ROOT, False),
    ("/srv/store/../etc/passwd", ROOT, False),
    ("/srv/store/a/../../etc", ROOT, False),
    ("/srv/store/a/..", ROOT, False),
    ("/srv/store/a/../", ROOT, False),
    ("/srv/store/.", ROOT, False),
    ("/srv/store/./a", ROOT, False),
    ("/srv/store/a/.", ROOT, False),
    ("/srv/store/a/../b://x", ROOT, False),
    ("/srv/store/x://../y", ROOT, False),
    # names that merely contain dots are names
    ("/srv/store/...", ROOT, True),
    ("/srv/store/..a", ROOT, True),
    ("/srv/store/a..", ROOT, True),
    ("/srv/store/.hidden", ROOT, True),
    ("/srv/store/a/..\n", ROOT, True),
    # URL-encoding is not decoded: %2e%2e is a name (neither rule decodes, nor does
    # the local file system or S3)
    ("/srv/store/%2e%2e/etc", ROOT, True),
    ("/srv/store/%2E%2E", ROOT, True),
    ("/srv/store%2fa", ROOT, False),
    # relative paths, empty paths and roots
    ("srv/store/a", ROOT, False),
    ("", ROOT, False),
    ("/srv/store/a", "", False),
    ("", "", False),
    ("/a", "", False),
    (None, ROOT, False),
    ("/srv/store/a", None, False),
    # the root "/" holds every absolute path but itself
    ("/a", "/", True),
    ("/a/b", "/", True),
    ("/", "/", False),
    ("//", "/", False),
    ("/..", "/", False),
    ("a", "/", False),
    # schemes: compared as written
    ("s3://bucket/root/a", "s3://bucket/root", True),
    ("s3://bucket/root/a/", "s3://bucket/root/", True),
    ("s3://bucket/root", "s3://bucket/root", False),
    ("s3://bucket/root2/a", "s3://bucket/root", False),
    ("s3://bucket/root/../other", "s3://bucket/root", False),
    ("s3://bucket/a", "s3://bucket", True),
    ("s3://bucket", "s3://bucket", False),
    ("s3://bucket2/a", "s3://bucket", False),
    ("S3://bucket/root/a", "s3://bucket/root", False),
    ("gs://bucket/root/a", "s3://bucket/root", False),
    ("/bucket/root/a", "s3://bucket/root", False),
    ("s3://bucket/root/a", "/bucket/root", False),
    ("file:///srv/store/a", ROOT, False),
    ("file:///srv/store/a", "file:///srv/store", True),
    ("s3://./a", "s3://.", False),
    # quotes and other characters that SQL must not trip over
    ("/srv/store/it's", ROOT, True),
    ("/srv/st'ore/a", "/srv/st'ore", True),
    ("/srv/store/é/ü", ROOT, True),
    ("/srv/störe/a", "/srv/störe", True),
    ("/srv/store/a\\..", ROOT, True),
    # blanks are characters of a name, not padding
    ("/srv/store/ ", ROOT, True),
    ("/srv/store/\t", ROOT, True),
    ("/srv/store ", ROOT, False),
    ("/srv/store /a", "/srv/store ", True),
    ("/srv/store/a", "/srv/store ", False),
    ("/srv/store/ ..", ROOT, True),
]


def _duckdb_inside(cases: list[tuple[str | None, str | None]]) -> list[bool]:
    con = duckdb.connect()
    INSIDE_ROOT.install(con)
    con.execute("CREATE TABLE c (i INTEGER, path VARCHAR, root VARCHAR)")
    con.executemany("INSERT INTO c VALUES (?, ?, ?)",
                    [(i, p, r) for i, (p, r) in enumerate(cases)])
    inline = con.execute(f"SELECT {INSIDE_ROOT.sql('path', 'root')} FROM c ORDER BY i").fetchall()
    macro = con.execute("SELECT inside_store_root(path, root) FROM c ORDER BY i").fetchall()
    assert inline == macro
    return [bool(row[0]) for row in macro]


@pytest.mark.parametrize(("path", "root", "inside"), INSIDE_CASES)
def test_root_rule_says_what_we_mean(path: str | None, root: str | None, inside: bool) -> None:
    assert inside_root(path, root) is inside
    assert _duckdb_inside([(path, root)]) == [inside]


def test_root_rule_python_and_duckdb_agree_on_every_pairing() -> None:
    """Every hostile path against every hostile root, and generated short paths made
    of the characters that matter (``/``, ``.``, ``:``, ``%``, a newline)."""
    paths = sorted({p for p, _, _ in INSIDE_CASES if p is not None})
    roots = sorted({r for _, r, _ in INSIDE_CASES if r is not None})
    cases: list[tuple[str | None, str | None]] = list(itertools.product(paths, roots))
    alphabet = ["/", ".", "a", ":", "%2e", "\n", " ", "//", ".."]
    rng = random.Random(10)
    generated = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 7)))
                 for _ in range(3000)]
    cases += [(p, r) for p in generated for r in ("/", "/a", "a", "/a/", ".", "")]
    cases += [(None, "/a"), ("/a/b", None), (None, None)]
    python = [inside_root(p, r) for p, r in cases]
    assert _duckdb_inside(cases) == python
    assert any(python) and not all(python)


OVERLAP_CASES: list[tuple[str, str, bool]] = [
    ("/s/a", "/s/a", True),
    ("/s/a", "/s/a/", True),
    ("/s/a", "/s/a/b", True),
    ("/s/a/b", "/s/a", True),
    ("/s/a", "/s/ab", False),
    ("/s/a", "/s/a-b", False),
    ("/s/a/", "/s/a.b", False),
    ("/s/a", "/s/b", False),
    ("s3://b/a", "s3://b/a/x", True),
    ("s3://b/a", "s3://b2/a", False),
    ("/", "/x", True),
]


@pytest.mark.parametrize(("a", "b", "overlap"), OVERLAP_CASES)
def test_overlap_rule_python_and_duckdb_agree(a: str, b: str, overlap: bool) -> None:
    con = duckdb.connect()
    OVERLAP.install(con)
    (in_sql,) = con.execute("SELECT paths_overlap(?, ?)", [a, b]).fetchone() or (None,)
    assert paths_overlap(a, b) is overlap
    assert bool(in_sql) is overlap
    assert paths_overlap(b, a) is overlap


def test_directory_keys_agree_and_show_overlaps() -> None:
    paths = sorted({p for p, _, _ in INSIDE_CASES if p is not None}
                   | {p for a, b, _ in OVERLAP_CASES for p in (a, b)})
    con = duckdb.connect()
    con.execute("CREATE TABLE c (i INTEGER, path VARCHAR)")
    con.executemany("INSERT INTO c VALUES (?, ?)", list(enumerate(paths)))
    in_sql = [row[0] for row in con.execute(
        f"SELECT {directory_key_sql('path')} FROM c ORDER BY i").fetchall()]
    assert in_sql == [directory_key(p) for p in paths]
    for a, b in itertools.product(paths, repeat=2):
        key_a, key_b = directory_key(a), directory_key(b)
        assert paths_overlap(a, b) == (key_a.startswith(key_b) or key_b.startswith(key_a))


def test_mark_finds_exactly_the_overlaps_the_rule_defines() -> None:
    """Mark applies OVERLAP to all pairs at once by sorting directory keys; on hostile
    footprints (sibling prefixes, trailing slashes, duplicates, visualizations inside,
    equal to and outside their own version) it flags exactly the versions that a
    pairwise application of the rule flags."""
    import uuid

    import pyarrow as pa

    from artifact_gc.mark.footprints import find_overlaps

    rng = random.Random(7)
    segments = ["a", "b", "a-b", "a.b", "ab", "a b", "é"]

    def path() -> str:
        # Two fixed levels of look-alike names, then an optional third: most paths
        # are leaves of their own, some share or contain another's.
        parts = [rng.choice(segments), rng.choice(segments)]
        if rng.random() < 0.8:
            parts.append(f"{rng.choice(segments)}{rng.randint(0, 40)}")
        return "/r/" + "/".join(parts) + rng.choice(["", "", "/", "//"])

    versions = {uuid.UUID(int=rng.getrandbits(128)): path() for _ in range(150)}
    visualizations: list[tuple[uuid.UUID, str]] = []
    for vid, uri in versions.items():
        for _ in range(rng.choice([0, 0, 1, 2])):
            visualizations.append((vid, rng.choice([
                uri, uri.rstrip("/") + "/" + rng.choice(segments), path(), path()])))
    footprints: dict[uuid.UUID, set[str]] = {vid: {uri} for vid, uri in versions.items()}
    for vid, uri in visualizations:
        footprints[vid].add(uri)
    expected = {
        a for a in versions for b in versions if a != b
        if any(paths_overlap(pa_, pb) for pa_ in footprints[a] for pb in footprints[b])
    }
    assert 10 < len(expected) < len(versions) - 10

    con = duckdb.connect()
    store = uuid.UUID(int=1)
    con.execute("CREATE TABLE in_versions (id UUID, uri VARCHAR, artifact_store_id UUID)")
    con.executemany("INSERT INTO in_versions VALUES (?, ?, ?)",
                    [(str(v), u, str(store)) for v, u in versions.items()])
    con.execute("CREATE TABLE in_visualizations (artifact_version_id UUID, uri VARCHAR)")
    con.executemany("INSERT INTO in_visualizations VALUES (?, ?)",
                    [(str(v), u) for v, u in visualizations])
    con.register("in_stores", pa.table({"artifact_store_id": [store.hex], "store_root": ["/r"]}))
    INSIDE_ROOT.install(con)
    find_overlaps(con, len(versions))
    found = {uuid.UUID(str(row[0])) for row in con.execute("SELECT id FROM overlapping").fetchall()}
    assert found == expected
