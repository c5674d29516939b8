"""The tool's version, and the version of the JSON documents it writes.

``__version__`` is the one place the version is written: pyproject.toml reads it
(``[tool.setuptools.dynamic]``) and ``simulator --version`` prints it. Every JSON document a
command writes starts with :func:`document_header`, so a script can tell which tool and which
layout of fields wrote a file.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
TOOL_NAME = "compressed-inference-simulator"
# The layout of the JSON documents (run --json, validate --json, ...): raised when a field is
# renamed or removed or changes meaning; new fields alone do not raise it.
OUTPUT_SCHEMA_VERSION = 1


def document_header() -> dict[str, Any]:
    """``tool``, ``tool_version`` and ``schema_version``: the first keys of every JSON output."""
    return {"tool": TOOL_NAME, "tool_version": __version__, "schema_version": OUTPUT_SCHEMA_VERSION}


def with_header(document: Any) -> Any:
    """``document`` with :func:`document_header` in front (a JSON object), or unchanged (a list)."""
    if not isinstance(document, dict):
        return document
    header = document_header()
    return {**header, **{key: value for key, value in document.items() if key not in header}}
