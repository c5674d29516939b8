"""Safe YAML reading shared by every input file (profiles, workloads, schedules).

Only the safe loader is used: a file can never construct Python objects or run code. A hostile
file cannot exhaust the machine either: the file size, the nesting depth and the number of values
after expanding aliases (an "alias bomb" of 1 KB expands to billions) are capped, and a file over
a cap is refused with one line before anything is built from it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.nodes import MappingNode, Node, SequenceNode

from .errors import ConfigError

#: the largest YAML input read (the shipped files are a few KB; a 100-layer workload about 10 KB).
#: PyYAML's pure-Python parser (the one whose depth can be capped) reads about 0.5 MB/s on a busy
#: core, so this bounds the time to refuse a file as well as its memory.
MAX_YAML_BYTES = 1024 * 1024
#: the deepest nesting of lists and mappings (the schemas need about 5)
MAX_YAML_DEPTH = 64
#: the most values (scalars, lists, mappings) a file may hold once every alias is expanded
MAX_YAML_VALUES = 500_000


def read_limited(path: str | Path, limit_bytes: int, what: str) -> bytes:
    """The bytes of ``path``, refused (one line naming the file) when it is no regular file
    or holds more than ``limit_bytes``: checked before reading, and again while reading
    (``/dev/zero`` and pipes report no size)."""
    path = Path(path)
    try:
        if path.is_dir():
            raise ConfigError(str(path), "", f"is a directory, expected a {what}")
        size = path.stat().st_size
        if size > limit_bytes:
            raise ConfigError(str(path), "", f"is {size:,} bytes, more than the {limit_bytes:,} a {what} may have")
        with path.open("rb") as handle:
            data = handle.read(limit_bytes + 1)
    except FileNotFoundError:
        raise ConfigError(str(path), "", "no such file") from None
    except OSError as err:
        raise ConfigError(str(path), "", f"cannot be read ({err.__class__.__name__}: {err.strerror or err})") from None
    if len(data) > limit_bytes:
        raise ConfigError(str(path), "", f"holds more than the {limit_bytes:,} bytes a {what} may have")
    return data


class _BoundedLoader(yaml.SafeLoader):
    """The safe loader with a nesting-depth cap (a list nested 100,000 deep would otherwise
    end in a RecursionError inside the composer)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        self.depth += 1
        try:
            if self.depth > MAX_YAML_DEPTH:
                raise ComposerError(None, None, f"nested more than {MAX_YAML_DEPTH} levels deep",
                                    self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _expanded_values(root: Node) -> int | None:
    """How many values the document holds with every alias expanded (a shared node counts once
    per reference), stopping once past the cap; None when an alias sits inside its own anchor.
    Linear in the composed (unexpanded) nodes."""
    counts: dict[int, int] = {}
    stack: list[tuple[Node, bool]] = [(root, False)]
    open_nodes: set[int] = set()
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if key in counts:
            continue
        if isinstance(node, SequenceNode):
            children = node.value
        elif isinstance(node, MappingNode):
            children = [part for pair in node.value for part in pair]
        else:
            counts[key] = 1
            continue
        if children_done:
            open_nodes.discard(key)
            counts[key] = min(1 + sum(counts[id(child)] for child in children), MAX_YAML_VALUES + 1)
            continue
        if key in open_nodes:
            return None      # an alias inside its own anchor: infinitely large
        open_nodes.add(key)
        stack.append((node, True))
        for child in children:
            if id(child) in open_nodes:
                return None
            if id(child) not in counts:
                stack.append((child, False))
    return counts[id(root)]


def _libyaml_load(text: str) -> tuple[bool, Any]:
    """``(True, data)`` when libyaml (PyYAML's C parser, where installed) reads ``text`` as one
    valid document within the depth and expanded-size caps; ``(False, None)`` for anything else,
    which :func:`load_yaml_text` then reads with the pure-Python parser (and its one-line errors).

    Speed trick, kept and labelled: the pure-Python parser took 0.03 s of a warm ``run``'s start-up
    (issue #16) to read the profile and the workload; libyaml takes 0.005 s. The same safe
    constructor builds the values. libyaml's composer recurses in C, so the nesting depth is
    counted first on its flat event stream.
    """
    loader_class = getattr(yaml, "CSafeLoader", None)
    if loader_class is None:
        return False, None
    depth = 0
    try:
        for event in yaml.parse(text, Loader=loader_class):
            if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
                depth += 1
                if depth > MAX_YAML_DEPTH:
                    return False, None
            elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
                depth -= 1
        loader = loader_class(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return True, None
            values = _expanded_values(node)
            if values is None or values > MAX_YAML_VALUES:
                return False, None
            return True, loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.YAMLError:
        return False, None


def load_yaml_text(text: str, source: str) -> Any:
    """Parse YAML text safely, within the depth and expanded-size caps; errors name ``source``."""
    done, data = _libyaml_load(text)
    if done:
        return data
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        values = _expanded_values(node)
        if values is None:
            raise ConfigError(source, "", "an alias refers to its own anchor (an infinitely deep value)")
        if values > MAX_YAML_VALUES:
            raise ConfigError(source, "", f"holds more than {MAX_YAML_VALUES:,} values once its aliases are "
                                          "expanded (an alias bomb?)")
        return loader.construct_document(node)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(source, where, f"not valid YAML: {problem}") from None
    finally:
        loader.dispose()


def read_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """Load ``path`` as a YAML mapping, or raise :class:`ConfigError` naming the file."""
    raw = read_limited(path, MAX_YAML_BYTES, "YAML file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(str(path), "", f"cannot be read (not UTF-8 text at byte {err.start})") from None
    data = load_yaml_text(text, str(path))
    if not isinstance(data, dict):
        raise ConfigError(str(path), "", f"expected a YAML mapping at the top, got {type(data).__name__}")
    return data


def field_path(loc: tuple[Any, ...]) -> str:
    """``('memory', 'caches', 1, 'line')`` -> ``'memory.caches[1].line'``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out
