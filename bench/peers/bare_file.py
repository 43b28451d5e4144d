"""The floor for the file path: ``orjson.loads`` per line plus a per-device sum and count.

No validation, no timestamps, no window, no checkpoint: what the simplest correct running
mean costs in Python with the same JSON parser iotmon uses.
"""

from __future__ import annotations

import argparse
import json
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("path")
    parser.add_argument("--result", required=True)
    args = parser.parse_args()

    started = time.monotonic()
    import orjson

    loads = orjson.loads
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    count = 0
    first = time.monotonic()
    with open(args.path, "rb") as lines:
        for line in lines:
            doc = loads(line)
            key = doc["id_equipamento"]
            value = doc["padrao"]["leitura"]["temperatura"]
            if key in sums:
                sums[key] += value
                counts[key] += 1
            else:
                sums[key] = value
                counts[key] = 1
            count += 1
    last = time.monotonic()
    result = {
        "started": started,
        "first": first,
        "first_count": 0,
        "last": last,
        "count": count,
        "devices": len(sums),
    }
    with open(args.result, "w", encoding="utf-8") as out:
        json.dump(result, out)


if __name__ == "__main__":
    main()
