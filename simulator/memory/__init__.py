"""Stage 4: the cache-line accesses each layer makes (traffic), the exact LRU cache model they run
through, and single-pass miss-ratio curves."""
