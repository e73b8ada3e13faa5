"""Checking command arguments against QAPI types, with the input visitor's errors.

A type is a string (``str``, ``int``, ``bool``, ``number``, ``any``), or
:class:`Enum`, :class:`Struct`, :class:`Union`, :class:`Alternate`,
:class:`List`.  :func:`visit` walks a value like QEMU's QObject input
visitor: members in schema order (a missing one, a mistyped one, a bad enum
value fail at once), unexpected members last; names in errors are the full
dotted path (``file.filename``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union as U

from emulator.qsd.protocol import QmpError

_SCALAR_NAMES = {"str": "string", "int": "integer", "bool": "boolean", "number": "number"}


@dataclass
class Enum:
    values: tuple[str, ...]


@dataclass
class Struct:
    """Members as (name, type, optional), in schema order."""

    members: list[tuple[str, "Type", bool]] = field(default_factory=list)


@dataclass
class Union:
    """A flat union: the base (holding the discriminator) and members per value."""

    base: Struct
    discriminator: str
    variants: dict[str, Struct]


@dataclass
class Alternate:
    """One of several types, chosen by the JSON type (object, string or null)."""

    name: str
    object: "Type"
    string: bool = True
    null: bool = False


@dataclass
class List:
    element: "Type"


Type = U[str, Enum, Struct, Union, Alternate, List]


def members(*specs: str, **types: "Type") -> Struct:
    """Struct from names like ``'node-name'`` / ``'*granularity'`` and their types."""
    out = []
    for spec in specs:
        name = spec.lstrip("*")
        out.append((name, types[name.replace("-", "_")], spec.startswith("*")))
    return Struct(out)


def _name(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _bad_type(name: str, expected: str) -> QmpError:
    return QmpError(f"Invalid parameter type for '{name}', expected: {expected}")


def visit(typ: Type, value: Any, name: str = "") -> Any:
    """Check ``value`` against ``typ``; raise QmpError with QEMU's text."""
    if isinstance(typ, str):
        return _visit_scalar(typ, value, name)
    if isinstance(typ, Enum):
        if not isinstance(value, str):
            raise _bad_type(name, "string")
        if value not in typ.values:
            raise QmpError(f"Parameter '{name}' does not accept value '{value}'")
        return value
    if isinstance(typ, List):
        if not isinstance(value, list):
            raise _bad_type(name, "array")
        return [visit(typ.element, v, f"{name}[{i}]") for i, v in enumerate(value)]
    if isinstance(typ, Alternate):
        if isinstance(value, dict):
            return visit(typ.object, value, name)
        if (isinstance(value, str) and typ.string) or (value is None and typ.null):
            return value
        raise _bad_type(name, typ.name)
    if not isinstance(value, dict):
        raise _bad_type(name, "object")
    if isinstance(typ, Union):
        seen = _visit_members(typ.base, value, name)
        variant = typ.variants.get(value[typ.discriminator])
        if variant is None:
            raise QmpError(f"Parameter '{_name(name, typ.discriminator)}' value "
                           f"'{value[typ.discriminator]}' is not modelled by qcowlab")
        seen |= _visit_members(variant, value, name)
    else:
        seen = _visit_members(typ, value, name)
    for key in value:
        if key not in seen:
            raise QmpError(f"Parameter '{_name(name, key)}' is unexpected")
    return value


def _visit_members(struct: Struct, value: dict, prefix: str) -> set[str]:
    for key, typ, optional in struct.members:
        if key not in value:
            if not optional:
                raise QmpError(f"Parameter '{_name(prefix, key)}' is missing")
            continue
        visit(typ, value[key], _name(prefix, key))
    return {m[0] for m in struct.members}


def _visit_scalar(typ: str, value: Any, name: str) -> Any:
    if typ == "any":
        return value
    ok = {"str": isinstance(value, str),
          "bool": isinstance(value, bool),
          "int": isinstance(value, int) and not isinstance(value, bool),
          "number": isinstance(value, (int, float)) and not isinstance(value, bool)}[typ]
    if not ok:
        raise _bad_type(name, _SCALAR_NAMES[typ])
    return value
