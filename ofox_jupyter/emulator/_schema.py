"""Deterministic JSON instances of a JSON schema, for tool arguments and ``json_schema`` replies.

Rules, first match wins: ``$ref`` (``#`` or a local ``#/…`` pointer, chains included) is
followed; ``const`` → the const; ``default`` → the default; ``enum`` → its first value;
``anyOf``/``oneOf`` → the first non-null option; ``allOf`` → the merged object; then by ``type``
(the first non-null of a list): object → its properties (all of them, or with
``all_properties=False`` only the required ones), array → one item (or ``[]`` with
``all_properties=False``), string ``"example"``, integer 1, number 1.5, boolean true,
null/unknown → null.

A schema comes from the request, so it may be hostile (recursive, exponentially branching,
malformed), and generating an instance is bounded:

* a ``$ref`` that is already being expanded further up is not expanded again: the recursion ends
  there (an array gets no item, a property that is not required is left out, anything else is
  null; ``anyOf``/``oneOf`` moves on to its next option);
* below depth 12 every value is null;
* one instance costs at most :data:`BUDGET` units: one per generated value, per property, option,
  ``allOf`` part or ``type`` entry looked at, per ``$ref`` followed (and per 64 characters of
  it), and per 256 characters of JSON of every copied ``const``/``default``/``enum`` value;
  beyond that :class:`SchemaTooLarge` is raised (the app answers 400);
* parts of the wrong type (``properties`` not an object, ``required`` not an array, …) are
  ignored, never an error.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["BUDGET", "SchemaTooLarge", "instance"]

#: Most units one instance may cost (see the module docstring).
BUDGET = 20_000
_MAX_DEPTH = 12
_MAX_REF_HOPS = 32  # a $ref chain longer than this resolves to nothing
_CUT = object()  # a recursion that was not expanded


class SchemaTooLarge(ValueError):
    """The schema's instance would exceed :data:`BUDGET`."""


def _pointer(root: Any, ref: str) -> Any:
    """The value at local JSON pointer ``ref`` (``#`` or ``#/a/b``) in ``root``, or ``None``."""
    if ref == "#":
        return root
    if not ref.startswith("#/"):
        return None
    target: Any = root
    for raw in ref[2:].split("/"):
        key = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(target, dict):
            target = target.get(key)
        elif isinstance(target, list) and key.isascii() and key.isdigit() and len(key) < 10:
            index = int(key)
            target = target[index] if index < len(target) else None
        else:
            return None
    return target


class _Builder:
    def __init__(self, root: Any, all_properties: bool) -> None:
        self.root = root
        self.all_properties = all_properties
        self.left = BUDGET
        self.expanding: set[str] = set()  # the $refs being expanded on the current path

    def charge(self, units: int) -> None:
        self.left -= units
        if self.left < 0:
            raise SchemaTooLarge(f"the schema expands to more than {BUDGET:,} values")

    def literal(self, value: Any) -> Any:
        """A ``const``/``default``/``enum`` value, charged by its size."""
        self.charge(len(json.dumps(value, ensure_ascii=False)) // 256)
        return value

    def resolve(self, schema: Any) -> tuple[Any, list[str]]:
        """Follow ``$ref`` chains: the target (``{}`` if unresolvable) and the refs followed."""
        refs: list[str] = []
        while isinstance(schema, dict) and isinstance(schema.get("$ref"), str):
            ref = schema["$ref"]
            if ref in refs or len(refs) >= _MAX_REF_HOPS:
                return {}, refs
            refs.append(ref)
            self.charge(1 + len(ref) // 64)
            target = _pointer(self.root, ref)
            schema = target if target is not None else {}
        return schema, refs

    def build(self, schema: Any, depth: int) -> Any:
        """An instance of ``schema``, or ``_CUT`` where a recursive ``$ref`` was not expanded."""
        self.charge(1)
        schema, refs = self.resolve(schema)
        if any(ref in self.expanding for ref in refs):
            return _CUT
        if not isinstance(schema, dict) or depth > _MAX_DEPTH:
            return None
        added = [ref for ref in refs if ref not in self.expanding]
        self.expanding.update(added)
        try:
            return self._build(schema, depth)
        finally:
            self.expanding.difference_update(added)

    def _build(self, schema: dict[str, Any], depth: int) -> Any:
        if "const" in schema:
            return self.literal(schema["const"])
        if "default" in schema:
            return self.literal(schema["default"])
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return self.literal(schema["enum"][0])
        for key in ("anyOf", "oneOf"):
            options = schema.get(key)
            if isinstance(options, list) and options:
                return self._first_option(options, depth)
        if isinstance(schema.get("allOf"), list):
            return self.build(self._merge(schema["allOf"]), depth + 1)
        kind = schema.get("type")
        if isinstance(kind, list):
            self.charge(len(kind))
            kind = next((k for k in kind if k != "null"), "null")
        if kind is None and "properties" in schema:
            kind = "object"
        if kind == "object":
            return self._object(schema, depth)
        if kind == "array":
            items = schema.get("items")
            if self.all_properties and isinstance(items, dict):
                item = self.build(items, depth + 1)
                return [] if item is _CUT else [item]
            return []
        if isinstance(kind, str):
            return {"string": "example", "integer": 1, "number": 1.5, "boolean": True}.get(kind)
        return None

    def _first_option(self, options: list[Any], depth: int) -> Any:
        nulls = []
        for option in options:
            self.charge(1)
            target, _ = self.resolve(option)
            if target is None or target == {"type": "null"}:
                nulls.append(option)
                continue
            value = self.build(option, depth + 1)
            if value is not _CUT:
                return value
        for option in nulls:
            value = self.build(option, depth + 1)
            if value is not _CUT:
                return value
        return _CUT

    def _merge(self, parts: list[Any]) -> dict[str, Any]:
        properties: dict[str, Any] = {}
        required: list[str] = []
        for part in parts:
            self.charge(1)
            part, _ = self.resolve(part)
            if not isinstance(part, dict):
                continue
            if isinstance(part.get("properties"), dict):
                self.charge(len(part["properties"]))
                properties.update(part["properties"])
            if isinstance(part.get("required"), list):
                self.charge(len(part["required"]))
                required.extend(name for name in part["required"] if isinstance(name, str))
        return {"type": "object", "properties": properties, "required": required}

    def _object(self, schema: dict[str, Any], depth: int) -> dict[str, Any]:
        properties = schema.get("properties")
        properties = properties if isinstance(properties, dict) else {}
        listed = schema.get("required")
        listed = listed if isinstance(listed, list) else []
        self.charge(len(properties) + len(listed))
        required = {name for name in listed if isinstance(name, str)}
        result: dict[str, Any] = {}
        for name, sub in properties.items():
            if not (self.all_properties or name in required):
                continue
            value = self.build(sub, depth + 1)
            if value is _CUT:
                if name not in required:
                    continue
                value = None
            result[name] = value
        return result


def instance(schema: Any, root: Any, *, all_properties: bool) -> Any:
    """A deterministic JSON value for ``schema`` (tool mode: required properties only).

    ``root`` is the document ``$ref`` pointers resolve against.  Raises :class:`SchemaTooLarge`
    when the instance would exceed :data:`BUDGET`.
    """
    value = _Builder(root, all_properties).build(schema, 0)
    return None if value is _CUT else value
