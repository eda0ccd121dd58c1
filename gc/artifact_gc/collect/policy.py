"""The policy file of ``gc collect``: TOML, read with :mod:`tomllib`, validated into a
:class:`Policy` value.

Every error names the file, the line and the key (``artifact-gc.toml:12: rules[2].
older_than: ...``). tomllib reports positions for syntax errors only, so the line of a
key whose value is wrong is found by scanning the text (:class:`_KeyLines`).

Secrets never live in the file: a storage option whose name looks like a credential
must be a ``${ENV}`` reference, and a database URL must not carry a literal password.
``${NAME}`` references are expanded from the environment the caller passes in (the CLI
passes ``os.environ``); nothing here reads the environment by itself.
"""

from __future__ import annotations

import fnmatch
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import timedelta
from pathlib import Path
from typing import Any

from artifact_gc.durations import format_duration, parse_duration
from artifact_gc.errors import UsageError
from artifact_gc.mark.options import DEFAULT_GRACE, MarkOptions
from artifact_gc.sweep.options import DEFAULT_UNDO_WINDOW

#: Brake defaults: conservative, so a first unattended run of a new policy stops and
#: asks rather than deleting a surprise.
DEFAULT_MAX_CANDIDATES = 10_000
DEFAULT_MAX_FRACTION = 0.5
DEFAULT_MAX_BYTES = 1 << 40  # 1 TiB
DEFAULT_JUMP_FACTOR = 3.0
DEFAULT_JUMP_MIN = 1_000

_SECRET_NAME = re.compile(
    r"(^|_)(key|secret|token|password|passwd|pwd|credentials?|sas|signature|"
    r"connection_string|private)($|_)", re.IGNORECASE)
#: Option names that contain a secret-looking word and are not secrets.
_NOT_SECRET = frozenset({"key_prefix", "anon_key"})
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_WHOLE_ENV_REF = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*\}$")
_BYTES = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGTP]?i?B?)\s*$", re.IGNORECASE)
_BYTE_UNITS = {"": 1, "B": 1, "K": 10**3, "KB": 10**3, "M": 10**6, "MB": 10**6,
               "G": 10**9, "GB": 10**9, "T": 10**12, "TB": 10**12, "P": 10**15, "PB": 10**15,
               "KIB": 1 << 10, "MIB": 1 << 20, "GIB": 1 << 30, "TIB": 1 << 40, "PIB": 1 << 50}

_TOP_KEYS = {"sweep", "sizes", "workers", "store", "manifests", "defaults", "rules", "brakes",
             "undo"}
_STORE_KEYS = {"db", "storage_options", "store_roots"}
_MANIFEST_KEYS = {"location"}
_RULE_KEYS = {"older_than", "keep_latest", "keep_tags", "orphan_files", "orphan_code_uploads"}
_SCOPE_KEYS = {"project", "artifact"}
_BRAKE_KEYS = {"max_candidates", "max_fraction", "max_bytes", "jump_factor", "jump_min"}
_UNDO_KEYS = {"window", "enabled"}


class PolicyError(UsageError):
    """A policy file that cannot be used as written (exit 2). ``line`` and ``key`` say
    where; the message carries both."""

    def __init__(self, source: str, line: int | None, key: str | None, problem: str) -> None:
        where = f"{source}:{line}" if line else source
        super().__init__(f"{where}: {key}: {problem}" if key else f"{where}: {problem}")
        self.source = source
        self.line = line
        self.key = key
        self.problem = problem


@dataclass(frozen=True)
class Rule:
    """What to keep in one scope: ``[defaults]`` (no project, no artifact) or one
    ``[[rules]]`` entry. ``keep_tags``, ``orphan_files`` and ``orphan_code_uploads`` go to
    the mark only when this build's :class:`MarkOptions` has them (see
    :func:`supported_mark_fields`)."""

    name: str
    project: str | None = None
    artifact: str | None = None
    older_than: timedelta = DEFAULT_GRACE
    keep_latest: int | None = None
    keep_tags: tuple[str, ...] = ()
    orphan_files: bool = False
    #: ``gc mark --orphan-code-uploads``: code archives no snapshot names become
    #: candidates (store-wide, like ``orphan_files``, which it needs).
    orphan_code_uploads: bool = False
    line: int | None = None

    @property
    def precedence(self) -> int:
        """Lower comes first: project and artifact, artifact, project, defaults."""
        if self.project is not None and self.artifact is not None:
            return 0
        if self.artifact is not None:
            return 1
        if self.project is not None:
            return 2
        return 3

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "project": self.project, "artifact": self.artifact,
                "older_than": format_duration(self.older_than),
                "keep_latest": self.keep_latest, "keep_tags": list(self.keep_tags),
                "orphan_files": self.orphan_files,
                "orphan_code_uploads": self.orphan_code_uploads}


@dataclass(frozen=True)
class Brakes:
    """When ``gc collect`` refuses to sweep. ``None`` turns a limit off."""

    max_candidates: int | None = DEFAULT_MAX_CANDIDATES
    max_fraction: float | None = DEFAULT_MAX_FRACTION
    max_bytes: int | None = DEFAULT_MAX_BYTES
    #: Fire when candidates exceed the previous collection's times this factor ...
    jump_factor: float | None = DEFAULT_JUMP_FACTOR
    #: ... and exceed them by at least this many versions (small stores wobble).
    jump_min: int = DEFAULT_JUMP_MIN

    def as_dict(self) -> dict[str, Any]:
        return {"max_candidates": self.max_candidates, "max_fraction": self.max_fraction,
                "max_bytes": self.max_bytes, "jump_factor": self.jump_factor,
                "jump_min": self.jump_min}


@dataclass(frozen=True)
class Policy:
    """A validated policy file: the store, where manifests go, the rules and brakes."""

    source: str
    manifests: str
    db: str | None = None
    #: fsspec options for remote stores and manifests, ``${ENV}`` already expanded.
    storage_options: dict[str, Any] = field(default_factory=dict, repr=False)
    store_roots: dict[str, str] = field(default_factory=dict)
    sweep: bool = False
    sizes: bool = True
    workers: int = 16
    defaults: Rule = field(default_factory=lambda: Rule(name="defaults"))
    rules: tuple[Rule, ...] = ()
    brakes: Brakes = field(default_factory=Brakes)
    #: ``[undo] window``: how long each sweep stays restorable (``gc restore``);
    #: None (``window = "0"`` or ``enabled = false``) deletes for good at once.
    undo_window: timedelta | None = DEFAULT_UNDO_WINDOW

    def as_dict(self) -> dict[str, Any]:
        """The policy without its storage options (they may hold expanded secrets)."""
        return {"source": self.source, "manifests": self.manifests, "sweep": self.sweep,
                "sizes": self.sizes, "workers": self.workers,
                "store_roots": dict(self.store_roots),
                "defaults": self.defaults.as_dict(),
                "rules": [r.as_dict() for r in self.rules],
                "brakes": self.brakes.as_dict(),
                "undo_window": None if self.undo_window is None
                else format_duration(self.undo_window)}


def supported_mark_fields() -> frozenset[str]:
    """The MarkOptions fields of this build (``keep_tags`` and ``orphan_files`` came
    later than the rest)."""
    return frozenset(f.name for f in fields(MarkOptions))


def load_policy(path: str | Path, environ: Mapping[str, str]) -> Policy:
    """Read and validate the policy file at ``path``; ``environ`` expands ``${NAME}``."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(source, None, None, f"cannot read the policy: "
                          f"{exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise PolicyError(source, None, None, "the policy is not UTF-8 text") from exc
    return parse_policy(text, environ, source=source)


def parse_policy(text: str, environ: Mapping[str, str], *, source: str = "<policy>") -> Policy:
    """Validate the TOML ``text`` of a policy; ``source`` names it in errors."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # Python 3.11's tomllib puts the position in the message only.
        message = str(exc)
        position = re.search(r"\s*\(at line (\d+), column (\d+)\)", message)
        line = int(position.group(1)) if position else None
        if position:
            message = message.replace(position.group(0), f" (column {position.group(2)})")
        raise PolicyError(source, line, None, f"not valid TOML: {message}") from exc
    return _Reader(source, _KeyLines(text), environ).policy(data)


class _KeyLines:
    """The line of each key, found by scanning the text: enough for the flat tables and
    arrays of tables a policy has (a key inside an inline table gets its table's line)."""

    _HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?")
    _KEY = re.compile(r'^\s*((?:"[^"]*"|[A-Za-z0-9_\-]+)(?:\s*\.\s*(?:"[^"]*"|[A-Za-z0-9_\-]+))*)'
                      r"\s*=")

    def __init__(self, text: str) -> None:
        self.keys: dict[tuple[str, str], int] = {}
        self.tables: dict[str, int] = {}
        table = ""
        arrays: dict[str, int] = {}
        for number, line in enumerate(text.splitlines(), start=1):
            header = self._HEADER.match(line)
            if header and not self._KEY.match(line):
                name = _dotted(header.group(2))
                if header.group(1) == "[[":
                    arrays[name] = arrays.get(name, 0) + 1
                    name = f"{name}[{arrays[name]}]"
                table = name
                self.tables.setdefault(table, number)
                continue
            key = self._KEY.match(line)
            if key:
                parts = _dotted(key.group(1)).split(".")
                where = ".".join(p for p in (table, *parts[:-1]) if p)
                self.keys.setdefault((where, parts[-1]), number)

    def line(self, table: str, key: str | None = None) -> int | None:
        if key is not None and (table, key) in self.keys:
            return self.keys[(table, key)]
        if table in self.tables:
            return self.tables[table]
        parent, _, last = table.rpartition(".")
        return self.keys.get((parent, last)) if last else None


def _dotted(name: str) -> str:
    return ".".join(p.strip().strip('"') for p in name.split("."))


class _Reader:
    """Turns the parsed TOML into a Policy, raising PolicyError at the first problem."""

    def __init__(self, source: str, lines: _KeyLines, environ: Mapping[str, str]) -> None:
        self.source = source
        self.lines = lines
        self.environ = environ
        self.mark_fields = supported_mark_fields()

    def fail(self, table: str, key: str | None, problem: str) -> PolicyError:
        name = ".".join(p for p in (table, key) if p) or None
        return PolicyError(self.source, self.lines.line(table, key), name, problem)

    def table(self, data: Any, name: str, allowed: set[str]) -> dict[str, Any]:
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise self.fail("", name, "must be a table")
        for key in data:
            if key not in allowed:
                raise self.fail(name, key, "unknown key; expected one of "
                                + ", ".join(sorted(allowed)))
        return data

    def policy(self, data: dict[str, Any]) -> Policy:
        self.table(data, "", _TOP_KEYS)
        store = self.table(data.get("store"), "store", _STORE_KEYS)
        manifests = self.table(data.get("manifests"), "manifests", _MANIFEST_KEYS)
        location = manifests.get("location")
        if not isinstance(location, str) or not location.strip():
            raise self.fail("manifests", "location",
                            "required: where the manifests and collection records go "
                            "(a directory or s3://bucket/prefix)")
        defaults = self.rule(data.get("defaults"), "defaults", None)
        raw_rules = data.get("rules", [])
        if not isinstance(raw_rules, list):
            raise self.fail("", "rules", "must be an array of tables ([[rules]])")
        rules = tuple(self.rule(r, f"rules[{i}]", defaults)
                      for i, r in enumerate(raw_rules, start=1))
        self.check_duplicates(rules)
        policy = Policy(
            source=self.source,
            manifests=self.expand("manifests", "location", location),
            db=self.database(store.get("db")),
            storage_options=self.storage_options(store.get("storage_options")),
            store_roots=self.store_roots(store.get("store_roots")),
            sweep=self.boolean("", "sweep", data.get("sweep", False)),
            sizes=self.boolean("", "sizes", data.get("sizes", True)),
            workers=self.integer("", "workers", data.get("workers", 16), minimum=1),
            defaults=defaults,
            rules=rules,
            brakes=self.brakes(data.get("brakes")),
            undo_window=self.undo(data.get("undo")),
        )
        if not policy.sizes and "max_bytes" in (data.get("brakes") or {}):
            raise self.fail("brakes", "max_bytes",
                            "needs sizes = true (without sizes a mark knows no bytes)")
        return policy

    # -- values -------------------------------------------------------------------

    def boolean(self, table: str, key: str, value: Any) -> bool:
        if not isinstance(value, bool):
            raise self.fail(table, key, f"must be true or false, not {value!r}")
        return value

    def integer(self, table: str, key: str, value: Any, *, minimum: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.fail(table, key, f"must be a whole number of at least {minimum}, "
                                        f"not {value!r}")
        return value

    def duration(self, table: str, key: str, value: Any) -> timedelta:
        if value == 0 or value == "0":
            return timedelta(0)
        if not isinstance(value, str):
            raise self.fail(table, key, f"must be a duration string like \"24h\" or \"7d\", "
                                        f"not {value!r}")
        try:
            return parse_duration(value)
        except UsageError as exc:
            raise self.fail(table, key, exc.message) from exc

    def size(self, table: str, key: str, value: Any) -> int:
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        match = _BYTES.match(value) if isinstance(value, str) else None
        unit = match.group(2).upper() if match else ""
        if not match or unit not in _BYTE_UNITS:
            raise self.fail(table, key, f"must be a number of bytes (an integer, or "
                                        f"\"500GB\", \"1TiB\"), not {value!r}")
        return int(float(match.group(1)) * _BYTE_UNITS[unit])

    def glob(self, table: str, key: str, value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(table, key, "must be a non-empty artifact-name glob")
        if re.search(r"\[[^\]]*$", value):
            raise self.fail(table, key, f"{value!r} has a '[' without a closing ']'")
        if "(?!)" in fnmatch.translate(value):
            raise self.fail(table, key, f"{value!r} has an empty character range")
        return value

    def expand(self, table: str, key: str, value: str) -> str:
        def lookup(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in self.environ:
                raise self.fail(table, key, f"refers to ${{{name}}}, which is not set in "
                                            "the environment")
            return self.environ[name]

        return _ENV_REF.sub(lookup, value)

    # -- sections -----------------------------------------------------------------

    def database(self, value: Any) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            raise self.fail("store", "db", "must be a database URL or a path to zenml.db")
        # user:password@ with a literal password: the password belongs in the environment.
        credentials = re.match(r"^[A-Za-z0-9+]+://([^/@]*)@", value)
        if credentials and ":" in credentials.group(1):
            password = credentials.group(1).split(":", 1)[1]
            if password and not _WHOLE_ENV_REF.match(password):
                raise self.fail("store", "db", "holds a literal password; write it as a "
                                "${ENV} reference (mysql+pymysql://zenml:${ZENML_DB_PASSWORD}"
                                "@host/zenml) or give the whole URL as \"${ZENML_STORE_URL}\"")
        return self.expand("store", "db", value)

    def storage_options(self, value: Any, table: str = "store.storage_options") -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail("store", "storage_options", "must be a table")
        options: dict[str, Any] = {}
        for key, item in value.items():
            if isinstance(item, dict):
                options[key] = self.storage_options(item, f"{table}.{key}")
                continue
            secret = _SECRET_NAME.search(key) and key.lower() not in _NOT_SECRET
            if secret and not (isinstance(item, str) and _WHOLE_ENV_REF.match(item)):
                # The value is never echoed: it may be the secret itself.
                raise self.fail(table, key, "looks like a secret: secrets come from the "
                                "environment, never the policy file; write \"${ENV_NAME}\"")
            options[key] = self.expand(table, key, item) if isinstance(item, str) else item
        return options

    def store_roots(self, value: Any) -> dict[str, str]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail("store", "store_roots", "must be a table of COMPONENT_ID = URL")
        roots: dict[str, str] = {}
        for key, item in value.items():
            if not isinstance(item, str) or not item.strip():
                raise self.fail("store.store_roots", key, "must be a root URL")
            roots[key.replace("-", "").lower()] = self.expand("store.store_roots", key, item)
        return roots

    def rule(self, data: Any, name: str, defaults: Rule | None) -> Rule:
        allowed = _RULE_KEYS | (_SCOPE_KEYS if defaults is not None else set())
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise self.fail("", name, "must be a table")
        self.table(data, name, allowed)
        base = defaults or Rule(name="defaults")
        project = data.get("project")
        if project is not None and (not isinstance(project, str) or not project.strip()):
            raise self.fail(name, "project", "must be a project name")
        artifact = self.glob(name, "artifact", data["artifact"]) if "artifact" in data else None
        if defaults is not None and project is None and artifact is None:
            raise self.fail(name, None, "a rule needs a project, an artifact glob or both "
                                        "(put settings for everything in [defaults])")
        keep_latest = data.get("keep_latest", base.keep_latest)
        if keep_latest is not None:
            keep_latest = self.integer(name, "keep_latest", keep_latest, minimum=0)
        keep_tags: tuple[str, ...] = base.keep_tags
        if "keep_tags" in data:
            tags = data["keep_tags"]
            if not isinstance(tags, list) or not all(isinstance(t, str) and t for t in tags):
                raise self.fail(name, "keep_tags", "must be a list of tag names")
            keep_tags = tuple(tags)
            if keep_tags:
                self.supported(name, "keep_tags", "--keep-tag")
        orphan_files = base.orphan_files
        if "orphan_files" in data:
            if defaults is not None:
                raise self.fail(name, "orphan_files", "is store-wide (files found by listing "
                                "belong to no project or artifact): set it in [defaults]")
            orphan_files = self.boolean(name, "orphan_files", data["orphan_files"])
            if orphan_files:
                self.supported(name, "orphan_files", "--orphan-files")
        orphan_code_uploads = base.orphan_code_uploads
        if "orphan_code_uploads" in data:
            if defaults is not None:
                raise self.fail(name, "orphan_code_uploads", "is store-wide (code archives "
                                "belong to no project or artifact): set it in [defaults]")
            orphan_code_uploads = self.boolean(name, "orphan_code_uploads",
                                               data["orphan_code_uploads"])
            if orphan_code_uploads:
                self.supported(name, "orphan_code_uploads", "--orphan-code-uploads")
                if not orphan_files:
                    raise self.fail(name, "orphan_code_uploads", "needs orphan_files = true "
                                    "(code archives are found by the orphan-file listing)")
        return Rule(
            name=name, project=project, artifact=artifact,
            older_than=self.duration(name, "older_than", data["older_than"])
            if "older_than" in data else base.older_than,
            keep_latest=keep_latest, keep_tags=keep_tags, orphan_files=orphan_files,
            orphan_code_uploads=orphan_code_uploads, line=self.lines.line(name),
        )

    def supported(self, table: str, key: str, flag: str) -> None:
        if key not in self.mark_fields:
            raise self.fail(table, key, f"not supported by this build of artifact-gc (its "
                                        f"gc mark has no {flag}); remove it or upgrade")

    def check_duplicates(self, rules: tuple[Rule, ...]) -> None:
        seen: dict[tuple[str | None, str | None], str] = {}
        for rule in rules:
            scope = (rule.project, rule.artifact)
            if scope in seen:
                raise self.fail(rule.name, None, f"has the same project and artifact as "
                                                 f"{seen[scope]}; merge them")
            seen[scope] = rule.name

    def undo(self, data: Any) -> timedelta | None:
        raw = self.table(data, "undo", _UNDO_KEYS)
        if not self.boolean("undo", "enabled", raw.get("enabled", True)):
            if "window" in raw:
                raise self.fail("undo", "window", "has no effect with enabled = false; "
                                "remove one of them")
            return None
        if "window" not in raw:
            return DEFAULT_UNDO_WINDOW
        window = self.duration("undo", "window", raw["window"])
        return window if window > timedelta(0) else None

    def brakes(self, data: Any) -> Brakes:
        raw = self.table(data, "brakes", _BRAKE_KEYS)
        defaults = Brakes()

        def optional(key: str, read: Any) -> Any:
            if key not in raw:
                return getattr(defaults, key)
            # false turns a brake off; there is no other way to say "none" in TOML.
            if raw[key] is False:
                return None
            return read(raw[key])

        def fraction(value: Any) -> float:
            if isinstance(value, bool) or not isinstance(value, int | float) \
                    or not 0 < value <= 1:
                raise self.fail("brakes", "max_fraction", "must be a fraction in (0, 1], "
                                f"or false; not {value!r}")
            return float(value)

        def factor(value: Any) -> float:
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 1:
                raise self.fail("brakes", "jump_factor", f"must be a number of at least 1, "
                                                         f"or false; not {value!r}")
            return float(value)

        return Brakes(
            max_candidates=optional("max_candidates", lambda v: self.integer(
                "brakes", "max_candidates", v, minimum=0)),
            max_fraction=optional("max_fraction", fraction),
            max_bytes=optional("max_bytes", lambda v: self.size("brakes", "max_bytes", v)),
            jump_factor=optional("jump_factor", factor),
            jump_min=self.integer("brakes", "jump_min", raw.get("jump_min", DEFAULT_JUMP_MIN),
                                  minimum=0),
        )
