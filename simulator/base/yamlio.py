"""Safe YAML reading shared by every input file (profiles, workloads, schedules).

Only ``yaml.safe_load`` is used: a file can never construct Python objects or run code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError


def read_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """Load ``path`` as a YAML mapping, or raise :class:`ConfigError` naming the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(str(path), "", "no such file") from None
    except IsADirectoryError:
        raise ConfigError(str(path), "", "is a directory, expected a YAML file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(str(path), "", f"cannot be read ({err.__class__.__name__}: {err})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(str(path), where, f"not valid YAML: {problem}") from None
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
