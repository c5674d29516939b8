"""A simulated memory hierarchy for compressed (pruned) neural-network inference.

The flow of one run is in :mod:`simulator.pipeline`; the stages, in order, are
profile / workload -> compression -> traffic -> cache -> engine -> results -> report.
"""

__version__ = "0.1.0"
