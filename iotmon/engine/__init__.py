"""The engine: the main loop and hot path (pipeline), the stream clock, partitions' state
and their restore and release (assignment), checkpoints with the commit gate
(checkpointer), and the protocols it runs its parts through (ports) — no transport named."""
