"""Subcommands of ``python -m simulator``: one module each, with ``register(subparsers)``.

A command module imports only argparse and the CLI helpers at import time; the heavy stages
are imported inside its handler, so ``--help`` and error paths stay fast.
"""

COMMANDS = [
    "run",
    "prune",
    "validate",
    "profiles",
    "sweep",
    "cachesim",
    "calibrate",
    "bench",
    "crosscheck",
    "digits",
    "cache",
]
