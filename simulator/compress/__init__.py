"""Stage 3: pruning schedules and rules, storage formats with exact bytes, and the encoded weights of a workload."""
