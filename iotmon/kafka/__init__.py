"""Kafka's wing: the source, its commit side (offsets, the changelog), dead letters, topic
administration, and the wiring that builds them for the engine."""
