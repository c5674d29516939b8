"""``python -m simulator cache info|clear``: the on-disk cache of pruned encodings."""

from __future__ import annotations

import argparse

from .options import add_command


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``cache`` subcommand."""
    cmd = add_command(subparsers, "cache", _cache, "show or clear the on-disk cache of pruned encodings")
    cmd.add_argument("action", choices=["info", "clear"],
                     help="info: folder, entries, size and bound; clear: delete every entry")


def _cache(args: argparse.Namespace) -> int:
    """The pruned encodings of seeded weights are cached on disk ($SIMULATOR_CACHE_DIR, bounded by
    $SIMULATOR_CACHE_MAX, default 2 GB; least recently used files go first)."""
    from ..base.units import format_bytes
    from ..compress import encodingcache

    if args.action == "clear":
        print(f"removed {encodingcache.clear()} cached encodings")
        return 0
    state = encodingcache.info()
    if state.directory is None:
        print("cache: off (SIMULATOR_CACHE_DIR is empty)")
        return 0
    print(f"cache:   {state.directory}")
    print(f"entries: {state.entries}")
    print(f"size:    {format_bytes(state.size_bytes)} of at most {format_bytes(state.max_bytes)}")
    return 0
