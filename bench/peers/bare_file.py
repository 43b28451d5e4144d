"""The floor for the file path: ``orjson.loads`` per line plus a per-device sum and count.

No validation, no timestamps, no window, no checkpoint: what the simplest correct running
mean costs in Python with the same JSON parser iotmon uses.

With ``--validate`` each line goes through iotmon's own parser instead (field checks, range
check, event time), still summed into a plain dict: what reading *valid* readings costs
before any window, alert or checkpoint — the part of iotmon's time no statistics code can
win back.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Iterable
from typing import Any

Loop = Callable[[Iterable[bytes], dict[str, float], dict[str, int]], int]


def bare_loop() -> Loop:
    import orjson

    loads = orjson.loads
    return lambda lines, sums, counts: _bare(loads, lines, sums, counts)


def validated_loop() -> Loop:
    from iotmon.parse import ReadingParser

    parse = ReadingParser().parse
    return lambda lines, sums, counts: _validated(parse, lines, sums, counts)


# The dict update is spelled out in both loops below: a shared helper would add a function
# call per line to the very cost they measure.


def _bare(
    loads: Callable[[bytes], Any],
    lines: Iterable[bytes],
    sums: dict[str, float],
    counts: dict[str, int],
) -> int:
    count = 0
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
    return count


def _validated(
    parse: Callable[[bytes], Any],
    lines: Iterable[bytes],
    sums: dict[str, float],
    counts: dict[str, int],
) -> int:
    count = 0
    for line in lines:
        reading = parse(line)  # JSON allows the trailing newline
        if type(reading) is tuple:
            key, value, _ = reading
            if key in sums:
                sums[key] += value
                counts[key] += 1
            else:
                sums[key] = value
                counts[key] = 1
        count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("path")
    parser.add_argument("--result", required=True)
    parser.add_argument("--validate", action="store_true", help="parse with iotmon's parser")
    args = parser.parse_args()

    started = time.monotonic()
    loop = validated_loop() if args.validate else bare_loop()
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    first = time.monotonic()
    with open(args.path, "rb") as lines:
        count = loop(lines, sums, counts)
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
