"""Validation shared by the input files: strict pydantic models, unit-typed fields,
and the translation of the first validation error into one :class:`ConfigError` line.

Why pydantic: it gives typed, immutable objects, required/unknown-key checks and
per-field error locations for free; this module only makes its messages read like
``file: field.path: what is wrong``.
"""

from __future__ import annotations

import typing
from typing import Annotated, Any, Callable, TypeVar

import pydantic
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema
from pydantic_core import ErrorDetails

from . import units
from .errors import ConfigError, quote
from .yamlio import field_path

M = TypeVar("M", bound=BaseModel)


class Strict(BaseModel):
    """Base of every schema model: unknown keys are errors, objects are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False, populate_by_name=False)


def _unit(quantity: units.Quantity):
    def parse(value: Any) -> float:
        return units.parse(value, quantity)

    return BeforeValidator(parse)


_NOUNS = {units.Quantity.BYTES: "size", units.Quantity.BYTES_PER_S: "bandwidth", units.Quantity.HZ: "frequency",
          units.Quantity.SECONDS: "time", units.Quantity.FLOP_PER_S: "rate", units.Quantity.JOULES: "energy",
          units.Quantity.WATTS: "power"}


def _as_written(quantity: units.Quantity, sign: str) -> WithJsonSchema:
    """The JSON Schema of a unit field as the files write it: a string such as ``'128 KiB'``
    (pydantic alone would describe the parsed number, which no file contains)."""
    return WithJsonSchema({"type": "string", "pattern": units.unit_pattern(quantity),
                           "description": f"{sign} {_NOUNS[quantity]} ({quantity.value}): "
                                          f"{units.unit_description(quantity)}",
                           "examples": [units.example(quantity)]})


# Quantities in readable units, converted to base units on load; all strictly positive.
Bytes = Annotated[int, BeforeValidator(units.parse_bytes), Field(gt=0), _as_written(units.Quantity.BYTES, "a positive")]
BytesPerS = Annotated[float, _unit(units.Quantity.BYTES_PER_S), Field(gt=0),
                      _as_written(units.Quantity.BYTES_PER_S, "a positive")]
Hertz = Annotated[float, _unit(units.Quantity.HZ), Field(gt=0), _as_written(units.Quantity.HZ, "a positive")]
Seconds = Annotated[float, _unit(units.Quantity.SECONDS), Field(ge=0),
                    _as_written(units.Quantity.SECONDS, "a non-negative")]
FlopPerS = Annotated[float, _unit(units.Quantity.FLOP_PER_S), Field(gt=0),
                     _as_written(units.Quantity.FLOP_PER_S, "a positive")]
Joules = Annotated[float, _unit(units.Quantity.JOULES), Field(ge=0),
                   _as_written(units.Quantity.JOULES, "a non-negative")]
Watts = Annotated[float, _unit(units.Quantity.WATTS), Field(ge=0), _as_written(units.Quantity.WATTS, "a non-negative")]
PositiveInt = Annotated[int, Field(strict=True, gt=0)]
Fraction = Annotated[float, Field(gt=0, le=1)]
Share = Annotated[float, Field(ge=0, le=1)]     # a share that may be none


def _model_at(root: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model class that validates the mapping at ``loc`` (used to list allowed keys)."""
    model: Any = root
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
        field = next((f for name, f in model.model_fields.items() if (f.alias or name) == part), None)
        if field is None:
            return None
        model = model_in(field.annotation)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def model_in(annotation: Any) -> Any:
    """Find the model class inside ``Optional[...]``, ``tuple[...]``, ``list[...]``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = model_in(arg)
        if found is not None:
            return found
    return None


INTERNAL = {"path"}  # fields the loader fills in, never written in a file


def allowed_keys(model: type[BaseModel]) -> list[str]:
    """The YAML keys a model accepts (aliases where set)."""
    return [f.alias or name for name, f in model.model_fields.items() if name not in INTERNAL]


def _message(root: type[BaseModel], error: ErrorDetails) -> str:
    kind = error["type"]
    loc = tuple(error["loc"])
    if kind == "extra_forbidden":
        parent = _model_at(root, loc[:-1])
        allowed = ", ".join(allowed_keys(parent)) if parent else "see the documentation"
        return f"unknown key (allowed: {allowed})"
    if kind == "missing":
        return "missing required field"
    message = error["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            message = message[len(prefix):]
    if kind not in ("value_error", "assertion_error") and "input" in error:
        message = f"{quote(error['input'])}: {message}"
    return message


def validate(model: type[M], data: Any, source: str, prefix: tuple[Any, ...] = (),
             where: Callable[[tuple[Any, ...]], str] = field_path) -> M:
    """Validate ``data`` against ``model``; the first problem becomes a :class:`ConfigError` located
    by ``where`` (a profile names its cache levels: :func:`simulator.hardware.fieldpaths.spell`)."""
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as err:
        first = err.errors(include_url=False)[0]
        loc = prefix + tuple(first["loc"])
        raise ConfigError(source, where(loc) or "(top level)", _message(model, first)) from None


def json_schema(model: type[BaseModel], title: str) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the files ``model`` reads, keys as the files write them
    (aliases), unit fields as strings with their pattern; fields the loader fills in are left out."""
    schema = model.model_json_schema(by_alias=True, mode="validation")
    for name in INTERNAL:
        schema.get("properties", {}).pop(name, None)
        if name in schema.get("required", []):
            schema["required"].remove(name)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema, "title": title}
