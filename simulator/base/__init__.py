"""Helpers every stage uses (errors, units, safe YAML, schema plumbing, atomic files, paths, progress,
tables); they import nothing else of the project."""
