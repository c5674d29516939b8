"""numba's CPU target, loaded once, without importing ``scipy.linalg`` for it.

The first compiled kernel a process calls (one loaded from numba's on-disk cache too) makes
numba load its CPU target: every lowering registry, among them ``numba.np.arraymath``, which
probes for a BLAS by importing ``scipy.linalg.cython_blas``. That import runs the whole
``scipy.linalg`` package (its array-API layer clones numpy, its docstrings are parsed): about
0.15 s of CPU, a sixth of a warm ``run`` of VGG-16 (issue #16's budget is 1 s), spent on the
critical path before any kernel can start. The simulator's kernels call no BLAS. The probe's
answer only chooses how numba compiles ``np.convolve`` and ``np.correlate`` of floats (a BLAS dot
or its own loop); ``np.dot`` and ``np.linalg`` still import scipy when a kernel using them is
compiled.

So the kernels' modules call :func:`load_numba_target` before their first kernel: it loads the
target with the probe's import refused (a ``None`` entry in ``sys.modules`` for the duration,
under numba's compiler lock), unless ``scipy.linalg`` is imported already (then the probe costs
nothing and finds it). ``tests/test_cli.py`` checks that a warm ``run`` does not import it.
"""

from __future__ import annotations

import sys
import threading

#: the module numba's BLAS probe imports (numba/np/linalg.py, ``ensure_blas``)
_BLAS_PROBE = "scipy.linalg.cython_blas"

_lock = threading.Lock()
_loaded = False


def load_numba_target() -> None:
    """Load numba's CPU target now (once per process), its BLAS probe answered without scipy
    (see the module docstring). Cheap after the first call; safe from several threads."""
    global _loaded
    if _loaded:
        return
    with _lock:
        if _loaded:
            return
        try:
            from numba.core.compiler_lock import global_compiler_lock
            from numba.core.registry import cpu_target
        except ImportError:     # a numba without these: its first kernel loads the target as usual
            _loaded = True
            return
        refuse = "scipy.linalg" not in sys.modules and _BLAS_PROBE not in sys.modules
        with global_compiler_lock:
            if refuse:
                sys.modules[_BLAS_PROBE] = None     # type: ignore[assignment]  # import raises ImportError
            try:
                cpu_target.target_context.refresh()
            finally:
                if refuse and _BLAS_PROBE in sys.modules and sys.modules[_BLAS_PROBE] is None:
                    del sys.modules[_BLAS_PROBE]
        _loaded = True
