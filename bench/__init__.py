"""Benchmarks of iotmon side by side with what users would pick instead.

``python -m bench`` (``make bench``) measures, on one machine and one Kafka broker, with
interleaved runs: throughput from Kafka (iotmon, a bare aiokafka loop, Quix Streams,
PySpark Structured Streaming), the file path (iotmon vs a bare orjson loop), alert latency,
memory per device and start-up time, and writes ``bench/results/latest.{md,json}``.
See bench/README.md.
"""
