"""Real runs on this machine: calibration of a profile, torch benchmarks, and the model against them."""
