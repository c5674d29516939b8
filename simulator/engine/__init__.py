"""Stage 5: the SimPy engine that times the work of every layer (caches, scratchpads, DRAM, link),
the accelerator cycle models feeding it, device memory and training steps."""
