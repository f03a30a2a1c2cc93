"""A strict reader of TOML tables into frozen dataclasses whose fields declare each key once.

A field is a key: its name is the key's name, its type says what the file may hold there, and its
default is the key's default. `Annotated` adds the rest of the declaration:

- checks, each called as `check(name, value)` with the key's full name (`builds.timeout`), that
  return the value (perhaps normalised) or raise `ConfigError` with a message naming the key;
- `each(...)` / `each_entry(...)`: checks of every element of an array or entry of a table;
- at most one `Key(...)`, for what the type and default cannot say: an environment variable that
  wins over the file, a sub-table the key lives in, a default made from the keys read before it.

`read_table` walks `dataclasses.fields`. A key in the file that no field declares is a problem,
with a suggestion when it looks like a misspelling of one that is; so is a value of the wrong type,
a missing key that has no default, and a value a check refuses. Problems are collected in a
`Reading`, in the order of the file, so that one run names them all. A key gives one problem, at its
first failed check (so a URL refused for carrying a credential is not echoed by a later check);
each element of an array or a table gives its own.
"""

import dataclasses
import difflib
import ipaddress
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import urlsplit

from runner.core.errors import ConfigError

Check = Callable[[str, Any], Any]
EntryCheck = Callable[[str, str, Any], Any]
_Number = TypeVar("_Number", int, float)
_Item = TypeVar("_Item")
_NO_DEFAULT: Any = object()


@dataclasses.dataclass(frozen=True)
class Key:
    """Where a key's value comes from, beyond the file's own key of the field's name."""

    env: str | None = None  # this environment variable, when set and not empty, wins
    table: str | None = None  # the key is in this sub-table (`storage.data_dir` of `Settings`)
    default: Any = _NO_DEFAULT  # the file's default, where the dataclass has none
    default_from: Callable[[Mapping[str, Any]], Any] | None = None  # from the keys read before
    file_type: Any = None  # what the file holds, where a check makes the field's type of it
    in_file: bool = True  # False: not a key at all (set by the code, or through the API)


NOT_IN_FILE = Key(in_file=False)


@dataclasses.dataclass(frozen=True)
class Each:
    """Checks of every element of an array, or of every entry of a table."""

    checks: tuple[Callable[..., Any], ...]


def each(*checks: Check) -> Each:
    """Checks of every element of an array, called as `check(name of the array, element)`."""
    return Each(checks)


def each_entry(*checks: EntryCheck) -> Each:
    """Checks of every entry of a table, called as `check(name of the table, key, value)`."""
    return Each(checks)


@dataclasses.dataclass
class Reading:
    """One reading of a config: where relative paths start, the environment, what is wrong."""

    base_dir: Path
    environ: Mapping[str, str]
    problems: list[str] = dataclasses.field(default_factory=list)
    # Each key read and found valid, by its full name (`builds.sandbox`): rules between keys of
    # several tables read them here, so that a refused neighbour does not hide their problems.
    valid: dict[str, Any] = dataclasses.field(default_factory=dict)

    def add(self, error: ConfigError) -> None:
        self.problems.extend(str(error).splitlines())

    def raise_problems(self, path: Path | None) -> None:
        if self.problems:
            raise problems_error(self.problems, path)


def problems_error(problems: list[str], path: Path | None) -> ConfigError:
    """ConfigError with the one problem, or with all of them (of `path`), one a line."""
    if len(problems) == 1:
        return ConfigError(problems[0])
    where = f" in {path}" if path else ""
    listing = "".join(f"\n  {problem}" for problem in problems)
    return ConfigError(f"{len(problems)} problems{where}:{listing}")


class _Reported(Exception):
    """A part of the value was refused, and its problems are in the `Reading` already."""


@dataclasses.dataclass(frozen=True)
class _Declared:
    name: str
    type: Any
    key: Key
    checks: tuple[Check, ...]
    each: tuple[Callable[..., Any], ...]
    default: Any  # dataclasses.MISSING: required

    @property
    def top(self) -> str:  # its key, or its sub-table's, in the dataclass's own table
        return self.key.table or self.name


def _declared(cls: type[Any]) -> tuple[_Declared, ...]:
    hints = typing.get_type_hints(cls, include_extras=True)
    declared = []
    for field in dataclasses.fields(cls):
        kind, extras = hints[field.name], []
        if typing.get_origin(kind) is Annotated:
            kind, *extras = typing.get_args(kind)
        if None in extras:
            # A check named like its field reads as the field's default (None) in the class
            # body: the check would silently never run.
            raise TypeError(f"{cls.__name__}.{field.name}: a check is None (shadowed by a name?)")
        key = next((extra for extra in extras if isinstance(extra, Key)), Key())
        default = key.default
        if default is _NO_DEFAULT:
            factory = field.default_factory
            default = factory() if callable(factory) else field.default
        checks = tuple(extra for extra in extras if callable(extra))
        per_item = tuple(
            check for extra in extras if isinstance(extra, Each) for check in extra.checks
        )
        if key.in_file:
            declared.append(_Declared(field.name, kind, key, checks, per_item, default))
    return tuple(declared)


def read_table(
    cls: type[Any], table: Mapping[str, Any], where: str, reading: Reading
) -> dict[str, Any]:
    """The valid values of `cls`'s keys in `table` (named `where`), by field name.

    Every problem goes to `reading`; a key that has one is left out of the result.
    """
    declared = _declared(cls)
    prefix = f"{where}." if where else ""
    _reject_unknown(table, prefix, list(dict.fromkeys(d.top for d in declared)), reading)
    # The file's order, then the rest in the order declared (a default_from reads keys before it).
    in_file = {key: position for position, key in enumerate(table)}
    sources: dict[str | None, Mapping[str, Any] | None] = {None: table}
    values: dict[str, Any] = {}
    for d in sorted(declared, key=lambda d: in_file.get(d.top, len(in_file))):
        if d.key.table not in sources:
            known = [other.name for other in declared if other.key.table == d.key.table]
            sources[d.key.table] = _subtable(table, d.top, prefix, known, reading)
        source = sources[d.key.table]
        if source is None:
            continue
        name = prefix + (f"{d.top}.{d.name}" if d.key.table else d.name)
        try:
            values[d.name] = reading.valid[name] = _read_key(d, source, name, values, reading)
        except ConfigError as error:
            reading.add(error)
        except _Reported:
            pass
    return values


def _subtable(
    table: Mapping[str, Any], name: str, prefix: str, known: list[str], reading: Reading
) -> Mapping[str, Any] | None:
    subtable = table.get(name, {})
    if not isinstance(subtable, dict):
        reading.add(ConfigError(f"{prefix}{name} must be a table ([{prefix}{name}])"))
        return None
    _reject_unknown(subtable, f"{prefix}{name}.", known, reading)
    return subtable


def _read_key(
    d: _Declared, table: Mapping[str, Any], name: str, before: Mapping[str, Any], reading: Reading
) -> Any:
    value = table.get(d.name, dataclasses.MISSING)
    if d.key.env and reading.environ.get(d.key.env):
        value = reading.environ[d.key.env]
        if _is_whole_number(d.type) and value.strip().isdigit():
            value = int(value)  # the environment holds text
    if value is dataclasses.MISSING and _is_table(d.type):
        value = {}  # an absent table: its keys' defaults
    elif value is dataclasses.MISSING and d.key.default_from is not None:
        try:
            value = d.key.default_from(before)
        except KeyError:
            raise _Reported from None  # a key it is made from was refused
    elif value is dataclasses.MISSING:
        value = d.default
    if value is dataclasses.MISSING or (value == "" and d.default is dataclasses.MISSING):
        where = f": set it in the config file or in the environment variable {d.key.env}"
        raise ConfigError(f"{name} is missing" + (where if d.key.env else ""))
    value = _convert(value, d.key.file_type or d.type, name, reading, d.each)
    if value is None:
        return None
    for check in d.checks:
        value = check(name, value)
    return value


def _is_whole_number(kind: Any) -> bool:
    return kind is int or (
        typing.get_origin(kind) in (types.UnionType, typing.Union) and int in typing.get_args(kind)
    )


def _convert(
    value: Any, kind: Any, name: str, reading: Reading, each: tuple[Callable[..., Any], ...] = ()
) -> Any:
    """`value` as `kind`, or ConfigError naming `name`. A relative path starts at `base_dir`."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (types.UnionType, typing.Union):  # X | None: absent, or "" for a string
        (inner,) = (arg for arg in args if arg is not type(None))
        if value is None or (value == "" and inner is str):
            return None
        return _convert(value, inner, name, reading, each)
    if origin is Literal:
        if _convert(value, str, name, reading) not in args:
            allowed = " or ".join(repr(choice) for choice in args)
            raise ConfigError(f"{name} must be {allowed}, not {value!r}")
        return value
    if origin is tuple and _is_table(args[0]):  # [[projects]]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{name} must be an array of tables ([[{name}]])")
        tables = [(f"{name}[{i}]", item) for i, item in enumerate(value)]
        return tuple(_every(tables, lambda where, item: _instance(args[0], item, where, reading)))
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{name} must be {_expected(kind)}, not {_kind_of(value)}")

        def element(where: str, item: Any) -> Any:
            item = _convert(item, args[0], where, reading)
            for check in each:
                item = check(name, item)
            return item

        return tuple(_every([(f"{name}[{i}]", item) for i, item in enumerate(value)], element))
    if origin is Mapping:
        if not isinstance(value, dict):
            raise ConfigError(f"{name} must be {_expected(kind)}, not {_kind_of(value)}")

        def entry(key: str, item: Any) -> Any:
            item = _convert(item, args[1], f"{name}.{key}", reading)
            for check in each:
                item = check(name, key, item)
            return item

        return dict(zip(value, _every(list(value.items()), entry), strict=True))
    if _is_table(kind):
        if not isinstance(value, dict):
            raise ConfigError(f"{name} must be a table ([{name}])")
        return _instance(kind, value, name, reading)
    if kind is Path:
        path = value if isinstance(value, Path) else Path(_convert(value, str, name, reading))
        return path if path.is_absolute() else (reading.base_dir / path).resolve()
    # bool is an int in Python; a boolean where a number is wanted is a mistake in the file.
    if isinstance(value, bool) and kind is not bool:
        raise ConfigError(f"{name} must be {_expected(kind)}, not a boolean")
    if not isinstance(value, (int, float) if kind is float else kind):
        raise ConfigError(f"{name} must be {_expected(kind)}, not {_kind_of(value)}")
    return value


def _is_table(kind: Any) -> bool:
    return isinstance(kind, type) and dataclasses.is_dataclass(kind)


def _instance(cls: type[Any], value: Any, name: str, reading: Reading) -> Any:
    if not isinstance(value, dict):
        raise ConfigError(f"{name} must be a table")
    values = read_table(cls, value, name, reading)
    if len(values) < len(_declared(cls)):
        raise _Reported
    return cls(**values)


def _every(items: list[tuple[str, Any]], convert: Callable[[str, Any], _Item]) -> list[_Item]:
    """Each item converted, or the problems of every item that was refused (one a line)."""
    converted, problems, reported = [], [], False
    for where, item in items:
        try:
            converted.append(convert(where, item))
        except ConfigError as error:
            problems.append(str(error))
        except _Reported:
            reported = True
    if problems:
        raise ConfigError("\n".join(problems))
    if reported:
        raise _Reported
    return converted


def _reject_unknown(
    table: Mapping[str, Any], prefix: str, known: list[str], reading: Reading
) -> None:
    for key in table:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
            reading.add(ConfigError(f"unknown key {prefix}{key!s}{hint}"))


_NAMES: dict[Any, str] = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "a boolean",
    list: "an array",
    dict: "a table",
    Path: "a string",
}


def _expected(kind: Any) -> str:
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is tuple:
        return f"an array of {_expected(args[0]).split(' ', 1)[1]}s"
    if origin is Mapping:
        return f"a table of {_expected(args[1]).split(' ', 1)[1]}s"
    return _NAMES.get(kind, "a value")


def _kind_of(value: Any) -> str:
    return "a float" if isinstance(value, float) else _NAMES.get(type(value), type(value).__name__)


# Checks that several keys share.


def positive(name: str, value: _Number) -> _Number:
    if value <= 0:
        raise ConfigError(f"{name} must be greater than 0")
    return value


def at_least(minimum: int, note: str) -> Check:
    def check(name: str, value: int) -> int:
        if value < minimum:
            raise ConfigError(f"{name} must be at least {minimum} {note}")
        return value

    return check


def url(*schemes: str) -> Check:
    """A URL of one of `schemes`, kept without a trailing slash; an http(s) one needs a host."""

    def check(name: str, value: str) -> str:
        value = value.rstrip("/")
        parts = urlsplit(value)
        if parts.scheme not in schemes or (parts.scheme.startswith("http") and not parts.netloc):
            allowed = " or ".join(f"{scheme}://" for scheme in schemes)
            raise ConfigError(f"{name} must be an {allowed} URL, not {value!r}")
        return value

    return check


def ip_address(name: str, value: str) -> str:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ConfigError(f"{name}: {value!r} is not an IP address") from None
    return value


def command(name: str, argv: tuple[str, ...]) -> tuple[str, ...]:
    if not argv:
        raise ConfigError(f"{name} must be a command as a list of strings")
    return argv


def is_loopback_url(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
