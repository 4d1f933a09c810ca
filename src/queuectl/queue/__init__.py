"""The queue layer: service facade, retry policy, settings, worker and executor."""
