"""Stage 1: hardware profiles, loaded from YAML and validated (units, cross-field checks, sources)."""
