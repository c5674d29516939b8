"""Field paths of a hardware profile, one spelling everywhere: ``memory.caches.L2.size``.

A path names YAML keys (aliases where the model has them: ``size``, not ``size_bytes``) joined
by dots; cache levels and scratchpads are addressed by their ``name``, never by position. Errors
(:func:`spell`), ``sources`` / ``fitted`` citations (:func:`field_paths`) and ``sweep --set``
(:func:`leaf_paths`, :func:`navigate`, :func:`assign`) all use this module, which walks the
pydantic models rather than keeping a list of its own.
"""

from __future__ import annotations

import enum
import typing
from typing import Any

from pydantic import BaseModel

from ..base.schema import model_in
from ..base.yamlio import field_path

NAMED_LISTS = ("caches", "scratchpads")       # lists of items addressed by their name
_META = {"schema_version", "description", "sources", "fitted", "path"}   # not fields a path may name


def spell(loc: tuple[Any, ...], data: Any) -> str:
    """A validation error's location in the one spelling: ``('memory', 'caches', 1, 'line')`` with
    ``data`` the profile mapping -> ``memory.caches.L2.line``. An item without a usable name keeps
    its position (``memory.caches[1]``)."""
    out: list[Any] = []
    node = data
    for i, part in enumerate(loc):
        item = node[part] if _indexable(node, part) else None
        if isinstance(part, int) and i and loc[i - 1] in NAMED_LISTS and isinstance(item, dict) \
                and isinstance(item.get("name"), str) and item["name"] and "." not in item["name"]:
            out.append(item["name"])
        else:
            out.append(part)
        node = item
    return field_path(tuple(out))


def _indexable(node: Any, part: Any) -> bool:
    if isinstance(node, dict):
        return part in node
    return isinstance(node, (list, tuple)) and isinstance(part, int) and 0 <= part < len(node)


def level_path(collection: str, name: str, field: str = "") -> str:
    """``level_path('caches', 'L2', 'size')`` -> ``memory.caches.L2.size``."""
    return f"memory.{collection}.{name}" + (f".{field}" if field else "")


def _walk(model: type[BaseModel], value: Any, prefix: str, out: set[str], named: bool = False) -> None:
    for name, info in model.model_fields.items():
        if name in _META or (named and name == "name"):   # an item's name is its address, not a field
            continue
        path = prefix + (info.alias or name)
        sub = model_in(info.annotation)
        child = getattr(value, name) if value is not None else None
        if sub is not None and typing.get_origin(info.annotation) is tuple:
            for item in child or ():
                out.update((path, f"{path}.{item.name}"))
                _walk(sub, item, f"{path}.{item.name}.", out, named=True)
            continue
        out.add(path)
        if sub is not None and typing.get_origin(info.annotation) is dict:   # items addressed by their key
            for key, item in (child or {}).items():
                out.add(f"{path}.{key}")
                _walk(sub, item, f"{path}.{key}.", out)
        elif sub is not None:
            _walk(sub, child, path + ".", out)
        elif isinstance(child, dict):
            out.update(f"{path}.{key}" for key in child)


def field_paths(profile: BaseModel) -> set[str]:
    """Every field path of ``profile`` (sections and leaves), sections it leaves out included
    (``link.bandwidth`` with no link): what a ``sources`` entry may cite."""
    out: set[str] = set()
    _walk(type(profile), profile, "", out)
    return out


def leaf_paths(profile: BaseModel) -> list[str]:
    """The paths that hold a value rather than a section (what ``sweep --set`` may vary), sorted."""
    paths = field_paths(profile)
    return sorted(p for p in paths if not any(q.startswith(p + ".") for q in paths))


def navigate(profile: BaseModel, path: str) -> tuple[str, Any]:
    """(model field name, validated value) at a path: ``memory.caches.L2.size`` -> ``('size_bytes', 131072)``."""
    obj: Any = profile
    name = ""
    for part in path.split("."):
        if isinstance(obj, tuple):          # cache levels and scratchpads, addressed by name
            obj = next(item for item in obj if item.name == part)
            continue
        if isinstance(obj, dict):           # a mapping of sections (compute.kernels.libraries), by key
            obj = obj[part]
            continue
        name = next(n for n, f in type(obj).model_fields.items() if (f.alias or n) == part)
        obj = getattr(obj, name)
    return name, obj.value if isinstance(obj, enum.Enum) else obj


def assign(data: dict[str, Any], path: str, value: Any) -> None:
    """Write ``value`` at a path of a profile mapping (creating sections on the way)."""
    parts = path.split(".")
    node: Any = data
    i = 0
    while i < len(parts) - 1:
        part = parts[i]
        if part in NAMED_LISTS and isinstance(node.get(part), list):
            node = next(item for item in node[part] if isinstance(item, dict) and item.get("name") == parts[i + 1])
            i += 2
            continue
        node = node.setdefault(part, {})
        i += 1
    node[parts[-1]] = value
