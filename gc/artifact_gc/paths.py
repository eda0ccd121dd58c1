"""The lexical rules over artifact store paths, each written once for Python and DuckDB.

Mark decides over millions of versions in DuckDB SQL; the sweep fences each path in
Python right before it deletes. Both must apply the same rule, so each rule here is
one expression tree from which the DuckDB SQL and the Python source are both
generated (``tests/test_paths.py`` runs the two over hostile paths and asserts they
agree). The rules are lexical: they read the spelling of a path, never the file
system. The sweep adds its own symlink check on top for local stores.

- :data:`INSIDE_ROOT`: ``path`` lies strictly below ``root`` (never the root itself),
  with no ``.`` or ``..`` segment anywhere in the path.
- :data:`OVERLAP`: one path equals the other or lies below it; :func:`directory_key`
  is the spelling under which sorted paths show every overlap at once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


class Expr:
    """A string or boolean expression over named string arguments."""

    def sql(self, args: Mapping[str, str]) -> str:
        """DuckDB SQL; ``args`` maps an argument's name to its SQL."""
        raise NotImplementedError

    def python(self, args: Mapping[str, str]) -> str:
        """Python source; ``args`` maps an argument's name to a Python name."""
        raise NotImplementedError


@dataclass(frozen=True)
class Arg(Expr):
    name: str

    def sql(self, args: Mapping[str, str]) -> str:
        return f"({args[self.name]})"

    def python(self, args: Mapping[str, str]) -> str:
        return args[self.name]


@dataclass(frozen=True)
class Text(Expr):
    value: str

    def sql(self, args: Mapping[str, str]) -> str:
        return "'" + self.value.replace("'", "''") + "'"

    def python(self, args: Mapping[str, str]) -> str:
        return repr(self.value)


@dataclass(frozen=True)
class TrimSlashes(Expr):
    """The text without its trailing ``/`` characters."""

    text: Expr

    def sql(self, args: Mapping[str, str]) -> str:
        # DuckDB's rtrim with a character set costs about 0.5 s of CPU per million
        # paths, and almost no path ends in "/": only those pay for it.
        text = self.text.sql(args)
        return f"(CASE WHEN ends_with({text}, '/') THEN rtrim({text}, '/') ELSE {text} END)"

    def python(self, args: Mapping[str, str]) -> str:
        return f"{self.text.python(args)}.rstrip('/')"


@dataclass(frozen=True)
class Concat(Expr):
    parts: tuple[Expr, ...]

    def sql(self, args: Mapping[str, str]) -> str:
        return "(" + " || ".join(p.sql(args) for p in self.parts) + ")"

    def python(self, args: Mapping[str, str]) -> str:
        return "(" + " + ".join(p.python(args) for p in self.parts) + ")"


@dataclass(frozen=True)
class StartsWith(Expr):
    text: Expr
    prefix: Expr

    def sql(self, args: Mapping[str, str]) -> str:
        return f"starts_with({self.text.sql(args)}, {self.prefix.sql(args)})"

    def python(self, args: Mapping[str, str]) -> str:
        return f"{self.text.python(args)}.startswith({self.prefix.python(args)})"


@dataclass(frozen=True)
class Contains(Expr):
    text: Expr
    part: Expr

    def sql(self, args: Mapping[str, str]) -> str:
        return f"contains({self.text.sql(args)}, {self.part.sql(args)})"

    def python(self, args: Mapping[str, str]) -> str:
        return f"({self.part.python(args)} in {self.text.python(args)})"


@dataclass(frozen=True)
class Equal(Expr):
    left: Expr
    right: Expr

    def sql(self, args: Mapping[str, str]) -> str:
        return f"({self.left.sql(args)} = {self.right.sql(args)})"

    def python(self, args: Mapping[str, str]) -> str:
        return f"({self.left.python(args)} == {self.right.python(args)})"


@dataclass(frozen=True)
class Not(Expr):
    term: Expr

    def sql(self, args: Mapping[str, str]) -> str:
        return f"(NOT {self.term.sql(args)})"

    def python(self, args: Mapping[str, str]) -> str:
        return f"(not {self.term.python(args)})"


@dataclass(frozen=True)
class All(Expr):
    terms: tuple[Expr, ...]

    def sql(self, args: Mapping[str, str]) -> str:
        return "(" + " AND ".join(t.sql(args) for t in self.terms) + ")"

    def python(self, args: Mapping[str, str]) -> str:
        return "(" + " and ".join(t.python(args) for t in self.terms) + ")"


@dataclass(frozen=True)
class AnyOf(Expr):
    terms: tuple[Expr, ...]

    def sql(self, args: Mapping[str, str]) -> str:
        return "(" + " OR ".join(t.sql(args) for t in self.terms) + ")"

    def python(self, args: Mapping[str, str]) -> str:
        return "(" + " or ".join(t.python(args) for t in self.terms) + ")"


def _compile(source: str) -> Callable[..., Any]:
    """The generated Python source of a rule, as a function.

    A rule runs once per path in the sweep's fence: compiled once from the source
    generated here (never from input), rather than interpreted over the tree on every
    call. The source needs no builtin but ``bool``.
    """
    function: Callable[..., Any] = eval(source, {"__builtins__": {"bool": bool}})
    return function


class Rule:
    """A boolean rule over named paths: a Python predicate, DuckDB SQL and a macro.

    A missing argument (None in Python, NULL in SQL) makes the rule false: a path
    that is not there is neither inside a root nor overlapping anything.
    """

    def __init__(self, name: str, params: tuple[str, ...], expr: Expr) -> None:
        self.name = name
        self.params = params
        self.expr = expr
        present = " and ".join(f"{p} is not None" for p in params)
        self.python_source = (f"lambda {', '.join(params)}: "
                              f"{present} and bool({expr.python({p: p for p in params})})")
        self._predicate: Callable[..., bool] = _compile(self.python_source)

    def __call__(self, *values: str | None) -> bool:
        return self._predicate(*values)

    def sql(self, *values: str) -> str:
        """The rule applied to SQL expressions, one per parameter."""
        args = dict(zip(self.params, values, strict=True))
        return f"coalesce({self.expr.sql(args)}, false)"

    def macro(self) -> str:
        """``CREATE TEMP MACRO <name>(<params>)`` for a DuckDB connection."""
        return (f"CREATE OR REPLACE TEMP MACRO {self.name}({', '.join(self.params)}) AS "
                + self.sql(*self.params))

    def install(self, connection: Any) -> None:
        """Define the rule as a macro on a DuckDB connection (temporary, its own)."""
        connection.execute(self.macro())


def _directory_key(path: Expr) -> Expr:
    """A path as the directory it names, ending in exactly one ``/``: a path lies
    below (or equals) another exactly when its key starts with the other's key."""
    return Concat((TrimSlashes(path), Text("/")))


_PATH, _ROOT = Arg("path"), Arg("root")
# Every segment of the path lies between two slashes once the path is wrapped in
# slashes, so ``/../`` occurs in it exactly when some segment is ``..`` (whatever
# the scheme, with or without trailing slashes).
_WRAPPED = Concat((Text("/"), _PATH, Text("/")))

#: ``inside_store_root(path, root)``: ``path`` lies strictly below ``root``. An empty
#: root has no inside (it would otherwise contain every absolute path); the root
#: ``/`` contains every absolute path but itself. ``root`` is compared as written:
#: ``S3://b`` is not ``s3://b``, and ``%2e%2e`` is a name, not ``..``.
INSIDE_ROOT = Rule("inside_store_root", ("path", "root"), All((
    Not(Equal(_ROOT, Text(""))),
    Not(Contains(_WRAPPED, Text("/../"))),
    Not(Contains(_WRAPPED, Text("/./"))),
    # The trimmed path never ends in "/" and the key always does, so a path that
    # starts with the key is strictly longer than it: the root itself is not inside.
    StartsWith(TrimSlashes(_PATH), _directory_key(_ROOT)),
)))

_A, _B = Arg("a"), Arg("b")

#: ``paths_overlap(a, b)``: deleting the directory ``a`` would touch ``b`` or the
#: other way round (equal paths, or one below the other; trailing slashes ignored).
OVERLAP = Rule("paths_overlap", ("a", "b"), AnyOf((
    StartsWith(_directory_key(_A), _directory_key(_B)),
    StartsWith(_directory_key(_B), _directory_key(_A)),
)))

_KEY = _directory_key(Arg("path"))
_key_of: Callable[[str], str] = _compile(f"lambda path: {_KEY.python({'path': 'path'})}")


def directory_key(path: str) -> str:
    """A path as the directory it names, ending in exactly one ``/``. Sorted keys
    apply :data:`OVERLAP` to many paths at once: a path equals or lies below another
    exactly when its key starts with the other's key."""
    return _key_of(path)


def directory_key_sql(path: str) -> str:
    """DuckDB SQL: :func:`directory_key` of the SQL expression ``path``."""
    return _KEY.sql({"path": path})


def inside_root(path: str | None, root: str | None) -> bool:
    """:data:`INSIDE_ROOT` in Python: ``path`` lies strictly below ``root``, lexically."""
    return INSIDE_ROOT(path, root)


def paths_overlap(a: str | None, b: str | None) -> bool:
    """:data:`OVERLAP` in Python: one path equals the other or lies below it."""
    return OVERLAP(a, b)
