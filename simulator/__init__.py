"""A simulated memory hierarchy for compressed (pruned) neural-network inference.

The flow of one run is in :mod:`simulator.pipeline`. The subpackages are the stages, in order,
each importing only the ones before it: ``base`` (helpers) -> ``hardware`` (profiles) -> ``model``
(layer graphs, weights) -> ``compress`` (schedules, encodings) -> ``memory`` (address traces, cache model)
-> ``engine`` (SimPy timing) -> ``pipeline`` -> ``output`` (report, timelines, plots) -> ``studies``
-> ``measure`` -> ``commands`` (the CLI).
"""

from .base.version import __version__  # noqa: F401  (one place: base/version.py)
