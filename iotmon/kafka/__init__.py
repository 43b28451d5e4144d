"""Kafka's wing: the source, the changelog, dead letters and topic administration."""
