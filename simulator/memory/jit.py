"""numba, for the compiled kernels of this stage, loaded without its BLAS probe.

Import ``numba`` from here (``from .jit import numba``) in modules whose kernels a run calls.

Speed trick, kept and labelled: the first compiled call loads numba's CPU target, which imports
``numba.np.arraymath``, which imports ``scipy.linalg.cython_blas`` (about 0.1 s, ``numpy.f2py``
included: a tenth of a warm ``run``) only to decide whether compiled ``np.correlate`` and
``np.convolve`` may call BLAS. No kernel of the simulator calls them, so this module imports
``numba.np.arraymath`` with that import blocked: numba then gives those two its own loop. Compiled
``np.dot`` and ``np.linalg`` are unaffected (numba imports scipy for them when it compiles them).
Where ``scipy.linalg`` is loaded already, nothing is blocked.
"""

from __future__ import annotations

import sys

import numba

_BLAS = "scipy.linalg.cython_blas"


def _import_arraymath_without_blas_probe() -> None:
    if "numba.np.arraymath" in sys.modules or _BLAS in sys.modules:
        import numba.np.arraymath  # noqa: F401 - loaded already, or scipy is there anyway
        return
    sys.modules[_BLAS] = None  # type: ignore[assignment]  # importing it now raises ImportError
    try:
        import numba.np.arraymath  # noqa: F401
    except ImportError:     # a numba that does not tolerate the missing probe: load it the plain way
        for name in [n for n in sys.modules if n.startswith("numba.np.arraymath")]:
            del sys.modules[name]
        del sys.modules[_BLAS]
        import numba.np.arraymath  # noqa: F401,F811
    finally:
        if sys.modules.get(_BLAS, 0) is None:
            del sys.modules[_BLAS]


_import_arraymath_without_blas_probe()


def _load_cached_without_refresh() -> None:
    """Load on-disk cached kernels without first loading numba's compiler registries.

    Speed trick, kept and labelled (issue #16): before it looks in its on-disk cache, numba's
    ``Cache.load_overload`` refreshes the CPU target, importing and installing every typing and
    lowering registry (unicode, lists, sets, dicts, random, datetime, ...): about 0.1 s of Python,
    GIL held, at the first compiled call of every process, while a warm ``run`` compiles nothing.
    Loaded machine code needs none of them, only numba's C helpers (installed when the target
    context is built) and its runtime (NRT, initialised here). A kernel not in the cache goes on to
    numba's compiler, which refreshes the target itself before it compiles; and should a load
    fail in any way, numba's own method (refresh, then load) runs instead.
    """
    from numba.core.caching import Cache
    from numba.core.runtime import nrt

    original = Cache.load_overload

    def load_overload(self, sig, target_context):
        try:
            nrt.rtsys.initialize(target_context)
            with self._guard_against_spurious_io_errors():
                return self._load_overload(sig, target_context)
        except Exception:   # noqa: BLE001 - any failure: numba's own way, which refreshes first
            return original(self, sig, target_context)

    if getattr(original, "__name__", "") == "load_overload" and hasattr(Cache, "_load_overload"):
        Cache.load_overload = load_overload  # type: ignore[method-assign]


_load_cached_without_refresh()

__all__ = ["numba"]
