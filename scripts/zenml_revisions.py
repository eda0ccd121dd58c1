"""Generate ZenML's alembic revision table from ZenML's own migration files.

Every ZenML release ships one migration per schema change plus an empty release
migration whose revision id is the release number ("0.70.0"). Reading the migration
files of one installed ZenML gives, for every revision up to that release:

- its place in the chain (``down_revision``);
- the release that first ships it (the next release migration on the chain);
- the tables its ``upgrade()`` creates, drops and renames.

The output is ``gc/artifact_gc/zenml/revisions.py``, data that the schema profiles
(``artifact_gc.zenml.profiles``) are chosen by and checked against.

    python scripts/zenml_revisions.py --python ~/.cache/artifact-gc/zenml-0.98.0/bin/python
    python scripts/zenml_revisions.py --migrations DIR      # a versions/ folder
    python scripts/zenml_revisions.py --check ...           # exit 1 if the file is stale
"""

from __future__ import annotations

import argparse
import ast
import graphlib
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = REPO / "gc" / "artifact_gc" / "zenml" / "revisions.py"
RELEASE = re.compile(r"^\d+\.\d+\.\d+$")

# Finds the package without importing it (importing zenml takes a minute on a busy
# machine).
_FIND_MIGRATIONS = (
    "import importlib.metadata as m, importlib.util as u, pathlib; "
    "print(m.version('zenml')); "
    "print(pathlib.Path(u.find_spec('zenml').origin).parent "
    "/ 'zen_stores' / 'migrations' / 'versions')"
)


@dataclass
class Migration:
    revision: str
    down: tuple[str, ...]
    #: Table changes in order: "+name" created, "-name" dropped, "old>new" renamed.
    changes: list[str] = field(default_factory=list)


def read_migration(path: Path) -> Migration | None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    values: dict[str, object] = {}
    functions: dict[str, ast.FunctionDef] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name) and target.id in ("revision", "down_revision"):
                values[target.id] = ast.literal_eval(node.value)
        elif isinstance(node, ast.FunctionDef):
            functions[node.name] = node
    revision = values.get("revision")
    if not isinstance(revision, str):
        return None
    down = values.get("down_revision")
    downs = tuple(down) if isinstance(down, tuple | list) else ((down,) if down else ())
    migration = Migration(revision, tuple(str(d) for d in downs))
    # upgrade() and the module's functions it calls (0.90 renames pipeline_deployment
    # in a helper), never downgrade()'s. Calls in source order: a migration may
    # rename a table it created.
    reached: list[ast.FunctionDef] = []
    todo = ["upgrade"]
    while todo:
        function = functions.get(todo.pop())
        if function is None or function in reached:
            continue
        reached.append(function)
        todo.extend(n.func.id for n in ast.walk(function)
                    if isinstance(n, ast.Call) and isinstance(n.func, ast.Name))
    calls = sorted(
        (n for f in reached for n in ast.walk(f) if isinstance(n, ast.Call)
         and isinstance(n.func, ast.Attribute)
         and n.func.attr in ("create_table", "drop_table", "rename_table")),
        key=lambda n: (n.lineno, n.col_offset),
    )
    for call in calls:
        names = [a.value for a in call.args[:2]
                 if isinstance(a, ast.Constant) and isinstance(a.value, str)]
        if call.func.attr == "rename_table" and len(names) < 2:  # type: ignore[attr-defined]
            # 5330ba58bf20 renames in a loop over a literal {old: new} mapping.
            migration.changes.extend(f"{old}>{new}" for old, new in _literal_mappings(reached))
            continue
        if not names:
            continue
        if call.func.attr == "create_table":  # type: ignore[attr-defined]
            migration.changes.append(f"+{names[0]}")
        elif call.func.attr == "drop_table":  # type: ignore[attr-defined]
            migration.changes.append(f"-{names[0]}")
        elif len(names) == 2:
            migration.changes.append(f"{names[0]}>{names[1]}")
    return migration


def _literal_mappings(functions: list[ast.FunctionDef]) -> list[tuple[str, str]]:
    """The {old: new} dict literals assigned to a name that says "table"."""
    pairs: list[tuple[str, str]] = []
    for function in functions:
        for assign in ast.walk(function):
            if not isinstance(assign, ast.Assign | ast.AnnAssign):
                continue
            targets = assign.targets if isinstance(assign, ast.Assign) else [assign.target]
            if not any(isinstance(t, ast.Name) and "table" in t.id for t in targets):
                continue
            node = assign.value
            if not isinstance(node, ast.Dict) or not node.keys:
                continue
            items = [(k.value, v.value) for k, v in zip(node.keys, node.values, strict=True)
                     if isinstance(k, ast.Constant) and isinstance(v, ast.Constant)
                     and isinstance(k.value, str) and isinstance(v.value, str)]
            if len(items) == len(node.keys):
                pairs.extend(items)
    return pairs


def chain(migrations: dict[str, Migration]) -> list[Migration]:
    """Every revision, parents before children (alembic's order)."""
    graph = {rev: set(m.down) & set(migrations) for rev, m in migrations.items()}
    order = list(graphlib.TopologicalSorter(graph).static_order())
    return [migrations[rev] for rev in order]


def releases(ordered: list[Migration]) -> dict[str, str]:
    """revision -> the first release that ships it (the next release migration)."""
    shipped: dict[str, str] = {}
    pending: list[str] = []
    for migration in ordered:
        pending.append(migration.revision)
        if RELEASE.match(migration.revision):
            for rev in pending:
                shipped[rev] = migration.revision
            pending = []
    return shipped


def render(ordered: list[Migration], shipped: dict[str, str], source: str) -> str:
    lines = [
        "# ruff: noqa: E501",
        '"""ZenML\'s alembic revisions, in order: generated, do not edit.',
        "",
        f"Generated by scripts/zenml_revisions.py from the migrations of {source}.",
        "Each row: (revision, the release that first ships it, its table changes in the",
        "order of ``upgrade()``: ``+name`` created, ``-name`` dropped, ``old>new`` renamed).",
        '"""',
        "",
        "from __future__ import annotations",
        "",
        "Revision = tuple[str, str, tuple[str, ...]]",
        "",
        f"GENERATED_FROM = {source!r}",
        "",
        "REVISIONS: tuple[Revision, ...] = (",
    ]
    for m in ordered:
        if m.revision not in shipped:
            continue  # after the last release: a development head
        lines.append(f"    ({m.revision!r}, {shipped[m.revision]!r}, {tuple(m.changes)!r}),")
    lines.append(")")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--python", help="an interpreter with zenml installed")
    where.add_argument("--migrations", type=Path, help="ZenML's migrations/versions folder")
    parser.add_argument("-o", "--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if the output file differs from what would be written")
    args = parser.parse_args(argv)
    if args.python:
        out = subprocess.run([args.python, "-c", _FIND_MIGRATIONS], check=True,
                             capture_output=True, text=True).stdout.split("\n")
        source, folder = f"zenml {out[0].strip()}", Path(out[1].strip())
    else:
        source, folder = f"{args.migrations.name}", args.migrations
    migrations = {}
    for path in sorted(folder.glob("*.py")):
        migration = read_migration(path)
        if migration is not None:
            migrations[migration.revision] = migration
    ordered = chain(migrations)
    text = render(ordered, releases(ordered), source)
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is out of date; run {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {args.output} ({len(ordered)} revisions from {source})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
