"""The engine: wiring, the main loop, partitions' in-memory state and the stream clock."""
