"""After a run: the report table and JSON, Perfetto timelines and every plot."""
