"""Questions answered with many runs: validation against published tables, sweeps, trace-driven
cache studies, vDNN tables, the digits accuracy loop."""
