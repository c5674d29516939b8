"""Subcommands of ``python -m simulator``: one module each, with ``register(subparsers)`` (which adds
the command with ``options.add_command``: its handler's docstring is the command's description).

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
