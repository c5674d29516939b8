"""After a run: the report table and JSON, Perfetto traces and every plot."""
