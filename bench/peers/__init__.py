"""Scripts the bench runs as separate processes; each writes its timing marks as JSON.

``iotmon_run.py``, ``bare_kafka.py`` and ``bare_file.py`` run in the project's virtualenv;
``quix_agg.py`` and ``spark_agg.py`` in the peers' own (``.cache/bench-peers/venv``).
"""
