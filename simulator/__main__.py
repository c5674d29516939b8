"""``python -m simulator``."""

from .cli import console

console()
