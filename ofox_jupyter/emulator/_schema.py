"""Deterministic JSON instances of a JSON schema, for tool arguments and ``json_schema`` replies.

Rules, first match wins: ``$ref`` (local ``#/…``) is followed; ``const`` → the const; ``default`` →
the default; ``enum`` → its first value; ``anyOf``/``oneOf`` → the first non-null option;
``allOf`` → the merged object; then by ``type`` (the first non-null of a list): object → its
properties (all of them, or with ``all_properties=False`` only the required ones), array → one
item (or ``[]`` with ``all_properties=False``), string ``"example"``, integer 1, number 1.5,
boolean true, null/unknown → null.
"""

from __future__ import annotations

from typing import Any

__all__ = ["instance"]

_MAX_DEPTH = 12


def _resolve(schema: Any, root: dict[str, Any]) -> Any:
    if isinstance(schema, dict) and isinstance(schema.get("$ref"), str):
        ref = schema["$ref"]
        if ref.startswith("#/"):
            target: Any = root
            for key in ref[2:].split("/"):
                target = target.get(key) if isinstance(target, dict) else None
            return target if target is not None else {}
    return schema


def instance(schema: Any, root: dict[str, Any], *, all_properties: bool, depth: int = 0) -> Any:
    """A deterministic JSON value valid for ``schema`` (tool mode: required properties only)."""
    schema = _resolve(schema, root)
    if not isinstance(schema, dict) or depth > _MAX_DEPTH:
        return None
    if "const" in schema:
        return schema["const"]
    if "default" in schema:
        return schema["default"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            usable = [
                option
                for option in options
                if _resolve(option, root) not in ({"type": "null"}, None)
            ]
            choice = usable[0] if usable else options[0]
            return instance(choice, root, all_properties=all_properties, depth=depth + 1)
    if isinstance(schema.get("allOf"), list):
        merged: dict[str, Any] = {"type": "object", "properties": {}, "required": []}
        for part in schema["allOf"]:
            part = _resolve(part, root)
            if isinstance(part, dict):
                merged["properties"].update(part.get("properties") or {})
                merged["required"].extend(part.get("required") or [])
        return instance(merged, root, all_properties=all_properties, depth=depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None and "properties" in schema:
        kind = "object"
    if kind == "object":
        properties = schema.get("properties") or {}
        required = set(schema.get("required") or [])
        return {
            name: instance(sub, root, all_properties=all_properties, depth=depth + 1)
            for name, sub in properties.items()
            if all_properties or name in required
        }
    if kind == "array":
        items = schema.get("items")
        if all_properties and isinstance(items, dict):
            return [instance(items, root, all_properties=True, depth=depth + 1)]
        return []
    return {"string": "example", "integer": 1, "number": 1.5, "boolean": True}.get(str(kind))
