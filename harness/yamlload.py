"""Safe YAML loading that remembers the line of every mapping and sequence.

Mappings load as :class:`LDict` and sequences as :class:`LList`; both carry
``line`` (1-based line of their first token) so a broken case can be reported
as ``FILE:LINE: message``.
"""
from __future__ import annotations

from typing import Any

import yaml

from harness.errors import CaseError


class LDict(dict):
    """A dict that knows the YAML line it came from."""

    line: int = 0


class LList(list):
    """A list that knows the YAML line it came from."""

    line: int = 0


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """Safe loader (libyaml's when available) producing LDict / LList with line numbers."""


def _mapping(loader: _Loader, node: yaml.MappingNode) -> LDict:
    result = LDict()
    result.line = node.start_mark.line + 1
    loader.flatten_mapping(node)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise CaseError(str(node.start_mark.name), key_node.start_mark.line + 1,
                            "unhashable mapping key") from None
        result[key] = loader.construct_object(value_node, deep=True)
    return result


def _sequence(loader: _Loader, node: yaml.SequenceNode) -> LList:
    result = LList(loader.construct_object(child, deep=True) for child in node.value)
    result.line = node.start_mark.line + 1
    return result


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _sequence)


def load(text: str, path: str) -> Any:
    """Parse ``text`` (the contents of ``path``); YAML errors become CaseError."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a safe loader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        problem = exc.problem or exc.context or "invalid YAML"
        raise CaseError(path, line, f"YAML error: {problem}") from None
    except yaml.YAMLError as exc:
        raise CaseError(path, 1, f"YAML error: {exc}") from None


def line_of(obj: Any, default: int = 1) -> int:
    """Line recorded on a loaded mapping/sequence, else ``default``."""
    return getattr(obj, "line", default) or default
