"""Snapshots and replies on the wire: one JSON object a line (orjson; dataclasses serialised natively, in C).

`decode_snapshot` rebuilds the typed `EngineSnapshot` (and the `OperatorView` in its `extra`) from the
type hints of the dataclasses, so an attached console renders exactly what an in-process one does.
Floats that are NaN travel as null and come back as NaN.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import types
import typing
from functools import cache
from typing import Any

from typing import TYPE_CHECKING

import orjson

if TYPE_CHECKING:
    from flashmm.core.engine import EngineSnapshot

PROTOCOL = 1


def encode(obj: Any) -> bytes:
    """One line: the object as JSON and a newline."""
    return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS,
                        default=_default)


def _default(obj: Any) -> Any:
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    return str(obj)


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


class DecodeError(ValueError):
    pass


def _build(tp: Any, v: Any) -> Any:
    if tp is Any:
        return v
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if v is None:
            if len(args) == 1 and args[0] is float:
                return None
            return None
        return _build(args[0], v) if len(args) == 1 else v
    if dataclasses.is_dataclass(tp):
        if not isinstance(v, dict):
            raise DecodeError(f"{tp.__name__}: expected an object")
        hints = _hints(tp)
        kwargs = {}
        for f in dataclasses.fields(tp):
            if f.name in v:
                kwargs[f.name] = _build(hints[f.name], v[f.name])
        try:
            return tp(**kwargs)
        except TypeError as exc:
            raise DecodeError(f"{tp.__name__}: {exc}") from None
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(v, list):
            raise DecodeError("expected an array")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_build(args[0], x) for x in v)
        if len(args) != len(v):
            raise DecodeError("array of the wrong length")
        return tuple(_build(a, x) for a, x in zip(args, v, strict=True))
    if origin is list:
        (arg,) = typing.get_args(tp) or (Any,)
        return [_build(arg, x) for x in v]
    if origin is dict:
        _, val = typing.get_args(tp) or (Any, Any)
        if not isinstance(v, dict):
            raise DecodeError("expected an object")
        return {k: _build(val, x) for k, x in v.items()}
    if tp is float:
        return math.nan if v is None else float(v)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return tp(v)
    return v


def decode_snapshot(d: dict[str, Any]) -> EngineSnapshot:
    from flashmm.control.view import OperatorView  # (here: `flashmm ctl` encodes and never needs the engine)
    from flashmm.core.engine import EngineSnapshot

    extra = d.get("extra") or {}
    snap = _build(EngineSnapshot, {**d, "extra": {}})
    op = extra.get("operator")
    new_extra = {k: v for k, v in extra.items() if k != "operator"}
    if op is not None:
        new_extra["operator"] = _build(OperatorView, op)
    return dataclasses.replace(snap, extra=new_extra)
