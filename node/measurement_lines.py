"""Measurement JSON lines back into measurements: the inverse of `wire.measurement_record`.

Sans-IO: a line (str or bytes) in, one result out, never an exception. The result is the
measurement (a `cuas_node.kernel.measurement` record, equal to the one `replay` printed), `None`
for a line that is not a measurement (blank, or another `type` such as `tracks` or `alert`), an
`UnknownKind` for a measurement kind this version does not know, or a `Rejected` saying why the
line is malformed. The schema of the lines is docs/schemas/measurement.schema.json.

What is checked is what the dataclasses declare, read from them once at import (so a field added
to, or made optional in, the measurement contract is parsed without a change here): a field
without a default is required unless it may be None (absent then means null); `str`, `float` (a
JSON integer is taken as a float; NaN, Infinity and numbers too large for a float are refused),
`int` (a float with an integral value is taken), `bool`, `X | None`, fixed-length tuples and
`tuple[X, ...]` (JSON arrays); and, beyond types, every `sigma_*` must be positive (fusion divides
by it). Unknown fields are refused, as the schema refuses them (a misspelt optional field would
otherwise vanish silently).
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cuas_node.kernel.measurement import AnyMeasurement

MEASUREMENT_KINDS: dict[str, type] = {cls.__name__: cls for cls in typing.get_args(AnyMeasurement)}
"""Measurement classes by the `kind` that `replay` prints (the class name)."""

# Reasons of `Rejected`: stable strings (the `track` summary counts skipped lines by them).
NOT_JSON = "not JSON"
NOT_OBJECT = "not a JSON object"
MISSING = "missing field"
WRONG_TYPE = "wrong type"
NON_FINITE = "non-finite number"
UNKNOWN_FIELD = "unknown field"
INVALID = "invalid value"


@dataclass(frozen=True, slots=True)
class Rejected:
    """A malformed line: `reason` is one of the constants above, `detail` says where."""

    reason: str
    detail: str

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}"


@dataclass(frozen=True, slots=True)
class UnknownKind:
    """A well-formed measurement line of a kind this version does not know (not fused)."""

    kind: str


ParsedLine = AnyMeasurement | Rejected | UnknownKind | None


class _Bad(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        self.rejected = Rejected(reason, detail)


# -- value checkers: JSON value in, the field's Python value out (or _Bad) -----------------------

Check = Callable[[str, Any], Any]


def _str(name: str, v: Any) -> str:
    if type(v) is str:
        return v
    raise _Bad(WRONG_TYPE, f"{name} must be a string, not {_json_type(v)}")


def _float(name: str, v: Any) -> float:
    t = type(v)
    if t is float:
        if math.isfinite(v):
            return float(v)
        raise _Bad(NON_FINITE, name)
    if t is int:
        try:
            return float(v)
        except OverflowError:
            raise _Bad(NON_FINITE, f"{name} (too large)") from None
    raise _Bad(WRONG_TYPE, f"{name} must be a number, not {_json_type(v)}")


def _int(name: str, v: Any) -> int:
    t = type(v)
    if t is int:
        return int(v)
    if t is float and math.isfinite(v) and v.is_integer():
        return int(v)
    raise _Bad(WRONG_TYPE, f"{name} must be an integer, not {_json_type(v)}")


def _bool(name: str, v: Any) -> bool:
    if type(v) is bool:
        return bool(v)
    raise _Bad(WRONG_TYPE, f"{name} must be true or false, not {_json_type(v)}")


def _positive(check: Check) -> Check:
    def positive(name: str, v: Any) -> Any:
        value = check(name, v)
        if value is not None and not value > 0:
            raise _Bad(INVALID, f"{name} must be positive")
        return value

    return positive


def _nullable(check: Check) -> Check:
    def nullable(name: str, v: Any) -> Any:
        return None if v is None else check(name, v)

    return nullable


NOT_MEASURED_IF_NON_FINITE = frozenset({"radial_mps", "sigma_radial_mps"})
"""Fields where a non-finite number reads as null: a radar's radial speed it did not measure, which
Python's json writes as NaN and which fusion takes as absent in-process too (docs/radar.md).
Elsewhere a non-finite number is refused (an infinite bearing sigma means something else)."""


def _non_finite_is_null(check: Check) -> Check:
    def lenient(name: str, v: Any) -> Any:
        return None if type(v) is float and not math.isfinite(v) else check(name, v)

    return lenient


def _array(items: tuple[Check, ...] | Check) -> Check:
    """A JSON array as a tuple: `items` a check per position (fixed length) or one for all."""

    def array(name: str, v: Any) -> tuple[Any, ...]:
        if type(v) is not list:
            raise _Bad(WRONG_TYPE, f"{name} must be an array, not {_json_type(v)}")
        if isinstance(items, tuple):
            if len(v) != len(items):
                raise _Bad(WRONG_TYPE, f"{name} must have {len(items)} items, not {len(v)}")
            return tuple(check(f"{name}[{i}]", x) for i, (check, x) in enumerate(zip(items, v, strict=True)))
        return tuple(items(f"{name}[{i}]", x) for i, x in enumerate(v))

    return array


_SCALARS: dict[Any, Check] = {str: _str, float: _float, int: _int, bool: _bool}


def _check_for(hint: Any, where: str) -> Check:
    """The checker of a field's type hint; a hint it does not know is a TypeError at import, so a
    new kind of field in the measurement contract cannot be skipped silently."""
    if hint in _SCALARS:
        return _SCALARS[hint]
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            return _nullable(_check_for(rest[0], where))
    if origin is tuple and args:
        if len(args) == 2 and args[1] is Ellipsis:
            return _array(_check_for(args[0], where))
        return _array(tuple(_check_for(a, where) for a in args))
    raise TypeError(f"measurement_lines: no parser for {where}: {hint!r}")


_REQUIRED = object()  # `_Field.absent`: the field must be present
_DEFAULT = object()  # `_Field.absent`: the dataclass's default applies


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    check: Check
    absent: object
    """What an absent field means: `_REQUIRED`, `_DEFAULT`, or None (a nullable field without a
    default: absent is null)."""


@dataclass(frozen=True, slots=True)
class _Kind:
    cls: type
    fields: tuple[_Field, ...]


def _kind(cls: type) -> _Kind:
    hints = typing.get_type_hints(cls)
    fields = []
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        check = _check_for(hint, f"{cls.__name__}.{f.name}")
        if f.name.startswith("sigma_"):
            check = _positive(check)
        if f.name in NOT_MEASURED_IF_NON_FINITE:
            check = _non_finite_is_null(check)
        absent: object = _REQUIRED
        if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING:
            absent = _DEFAULT
        elif type(None) in typing.get_args(hint):
            absent = None
        fields.append(_Field(f.name, check, absent))
    return _Kind(cls, tuple(fields))


_KINDS = {name: _kind(cls) for name, cls in MEASUREMENT_KINDS.items()}
_ABSENT = object()


def _json_type(v: Any) -> str:
    if v is None:
        return "null"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "an array"}.get(
        type(v), "an object"
    )


def parse_line(line: str | bytes) -> ParsedLine:
    """One line of `replay`'s output (or any JSON line): see the module docstring."""
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        if not line.strip():
            return None
        if isinstance(exc, json.JSONDecodeError):  # its own "line 1 column 5" would read as the file's
            return Rejected(NOT_JSON, f"{exc.msg} at character {exc.pos + 1}")
        return Rejected(NOT_JSON, str(exc) if isinstance(exc, ValueError) else "nested too deeply")
    if type(obj) is not dict:
        return Rejected(NOT_OBJECT, f"a JSON {_json_type(obj).split()[-1]}")
    line_type = obj.get("type", _ABSENT)
    if line_type != "measurement":
        if type(line_type) is str:
            return None  # a tracks, alert or other line: not ours
        if line_type is _ABSENT:
            return Rejected(MISSING, "type")
        return Rejected(WRONG_TYPE, f"type must be a string, not {_json_type(line_type)}")
    kind_name = obj.get("kind", _ABSENT)
    if type(kind_name) is not str:
        if kind_name is _ABSENT:
            return Rejected(MISSING, "kind")
        return Rejected(WRONG_TYPE, f"kind must be a string, not {_json_type(kind_name)}")
    kind = _KINDS.get(kind_name)
    if kind is None:
        return UnknownKind(kind_name)
    values: dict[str, Any] = {}
    present = 2  # type and kind
    try:
        for f in kind.fields:
            v = obj.get(f.name, _ABSENT)
            if v is _ABSENT:
                if f.absent is _REQUIRED:  # (and a key it does not know: a misspelling of it?)
                    extra = _unknown_keys(obj, kind)
                    return Rejected(MISSING, f.name + (f" ({UNKNOWN_FIELD}: {extra})"[:200] if extra else ""))
                if f.absent is None:
                    values[f.name] = None
                continue
            values[f.name] = f.check(f.name, v)
            present += 1
    except _Bad as bad:
        return bad.rejected
    if len(obj) != present:  # a key that is neither type, kind nor a field
        return Rejected(UNKNOWN_FIELD, _unknown_keys(obj, kind)[:200])
    measurement: AnyMeasurement = kind.cls(**values)
    return measurement


def _unknown_keys(obj: dict[str, Any], kind: _Kind) -> str:
    """The keys of a line that are neither type, kind nor a field of its kind, sorted."""
    return ", ".join(sorted(set(obj) - {"type", "kind"} - {f.name for f in kind.fields}))
