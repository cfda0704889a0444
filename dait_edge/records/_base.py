"""What every record shares: a dataclass that knows its file, its schema version, and how to check itself.

A record is read from JSON and checked field by field against its type annotations (str, int, float,
bool, X | None, list[X], tuple[X, ...], dict[str, X], Any, nested records and dataclasses), so a
consumer gets typed attributes or one line naming the file and the field that is wrong. Writing is
atomic (utils.io). A file carries `kind` (files of one name, such as summary.json, hold different
records) and its schema version; a file without them was written before records had versions and is
read as version 0 through the record's `upgrade`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import types
import typing
from pathlib import Path
from typing import Any, ClassVar, Self

from dait_edge.errors import UserError
from dait_edge.utils.io import write_json_atomic


class RecordError(UserError):
    """A file the tool wrote, missing a field or holding one of the wrong type."""


INTERNAL = {"internal": True}  # field metadata: kept in memory, never written


class Record:
    """Base of every record; subclasses are dataclasses."""

    FILE: ClassVar[str] = ""  # its name in its folder ("" when it only lives inside another record)
    KIND: ClassVar[str] = ""  # written as "kind" by records that are files
    VERSION: ClassVar[int] = 1
    VERSION_KEY: ClassVar[str] = "schema_version"
    LEGACY_KEY: ClassVar[str] = ""  # a field that tells an unversioned (version 0) file of this kind apart
    WHAT: ClassVar[str] = "record"  # how messages name it
    FIX: ClassVar[str] = "rewrite it with the command that made it"

    # ------------------------------------------------------------------ dicts

    @classmethod
    def from_dict(cls, data: Any, source: str | os.PathLike = "") -> Self:
        """Check `data` against this record's fields; a RecordError names `source` and the field."""
        where = _Where(str(source) or cls.WHAT, cls.FIX)
        if not isinstance(data, dict):
            where.fail("", f"must be a JSON object (a {cls.WHAT}), not {_kind_of(data)}")
        if cls.KIND:
            data = cls._current_shape(data, where)
        return _parse_dataclass(cls, data, where, "")

    def to_dict(self) -> dict[str, Any]:
        body = {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self) if not f.metadata}
        if not self.KIND:
            return body
        return {"kind": self.KIND, self.VERSION_KEY: self.VERSION, **body}

    @classmethod
    def upgrade(cls, data: dict[str, Any], version: int) -> dict[str, Any]:
        """A file of an older schema version in the current shape (version 0: written before versions)."""
        return data

    @classmethod
    def matches(cls, data: Any) -> bool:
        """Does `data` (a parsed JSON file) hold this kind of record? Cheap: no field is checked."""
        if not isinstance(data, dict):
            return False
        if "kind" in data:
            return data["kind"] == cls.KIND
        return bool(cls.LEGACY_KEY) and cls.LEGACY_KEY in data

    @classmethod
    def _current_shape(cls, data: dict[str, Any], where: _Where) -> dict[str, Any]:
        kind = data.get("kind")
        if kind is not None and kind != cls.KIND:
            where.fail("kind", f"says {kind!r}: this file is not a {cls.WHAT}", fix="pass the right file")
        version = data.get(cls.VERSION_KEY, 0)
        if isinstance(version, bool) or not isinstance(version, int) or version < 0:
            where.fail(cls.VERSION_KEY, f"must be a schema version (a whole number), not {version!r}")
        if version > cls.VERSION:
            where.fail(
                cls.VERSION_KEY,
                f"is {version}, newer than this dait-edge reads ({cls.VERSION})",
                fix="upgrade dait-edge (pip install -U dait-edge)",
            )
        if kind is None and not cls.matches(data):
            where.fail(
                "kind", f"is missing and the file does not look like a {cls.WHAT}", fix="pass the right file"
            )
        return cls.upgrade(dict(data), version) if version < cls.VERSION else data

    # ------------------------------------------------------------------ files

    @classmethod
    def path_in(cls, folder: str | os.PathLike) -> Path:
        return Path(folder) / cls.FILE

    @classmethod
    def read(cls, path: str | os.PathLike) -> Self:
        """The record in `path` (a file, or the folder holding FILE); one-line errors for a missing,
        unreadable or malformed file."""
        path = Path(path)
        if path.is_dir() and cls.FILE:
            path = cls.path_in(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise RecordError(f"{path} does not exist; {cls.FIX}.") from None
        except (OSError, UnicodeDecodeError) as err:
            raise RecordError(f"cannot read {path} ({err}); {cls.FIX}.") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise RecordError(f"{path} is not valid JSON ({err}); {cls.FIX}.") from None
        return cls.from_dict(data, path)

    @classmethod
    def read_if_present(cls, path: str | os.PathLike) -> Self | None:
        """Like `read`, but None where there is no such file or the file holds another kind of record
        (an export's summary.json is not a run's); a damaged file of this kind is still an error."""
        path = Path(path)
        if path.is_dir() and cls.FILE:
            path = cls.path_in(path)
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return None
        return cls.from_dict(data, path) if cls.matches(data) else None

    def write(self, path: str | os.PathLike) -> Path:
        """Write atomically to `path` (a file, or the folder that gets FILE); returns the file."""
        path = Path(path)
        if self.FILE and (path.is_dir() or not path.suffix):
            path = self.path_in(path)
        write_json_atomic(path, self.to_dict())
        return path


# ---------------------------------------------------------------------- checking


def check_fields(cls: type, data: dict, source: str, fix: str):
    """`cls(**data)` for any dataclass, each value checked against its field's type first; a RecordError
    names `source` and the field (for data that is not a record's file, e.g. a config file's values)."""
    return _parse_dataclass(cls, data, _Where(source, fix), "")


@dataclasses.dataclass(frozen=True)
class _Where:
    source: str
    fix: str

    def fail(self, field: str, problem: str, fix: str = "") -> typing.NoReturn:
        name = f"field {field!r} " if field else ""
        raise RecordError(f"{self.source}: {name}{problem}; {fix or self.fix}.")


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _parse_dataclass(cls: type, data: dict, where: _Where, prefix: str):
    hints = _hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        if f.metadata or not f.init:
            continue
        name = f"{prefix}{f.name}"
        if f.name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                where.fail(name, "is missing")
            continue
        values[f.name] = _convert(data[f.name], hints[f.name], where, name)
    return cls(**values)


def _convert(value: Any, annotation: Any, where: _Where, name: str) -> Any:
    if annotation is Any:
        return value
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        for option in options[:-1]:  # int | str: the first that fits
            try:
                return _convert(value, option, where, name)
            except RecordError:
                continue
        return _convert(value, options[-1], where, name)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):  # tuples: records built in memory
            where.fail(name, f"must be a list, not {_kind_of(value)}")
        item = args[0] if args else Any
        items = [_convert(v, item, where, f"{name}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            where.fail(name, f"must be an object, not {_kind_of(value)}")
        item = args[1] if len(args) == 2 else Any
        return {str(k): _convert(v, item, where, f"{name}.{k}") for k, v in value.items()}
    if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            where.fail(name, f"must be an object, not {_kind_of(value)}")
        return _parse_dataclass(annotation, value, where, f"{name}.")
    if annotation is bool:
        if not isinstance(value, bool):
            where.fail(name, f"must be true or false, not {_kind_of(value)}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            where.fail(name, f"must be a whole number, not {_kind_of(value)}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            where.fail(name, f"must be a number, not {_kind_of(value)}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            where.fail(name, f"must be a string, not {_kind_of(value)}")
        return value
    raise TypeError(f"records cannot check a field of type {annotation!r} ({name})")


def _kind_of(value: Any) -> str:
    if value is None:
        return "null"
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def _plain(value: Any) -> Any:
    """A record's value as JSON data: nested records as objects, tuples as lists, paths as strings."""
    if isinstance(value, Record):
        return value.to_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value
