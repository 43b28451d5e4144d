"""Statistics of all devices of one input partition."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

from iotmon.state.encoding import Chunked
from iotmon.stats.device import DeviceState, DeviceStats
from iotmon.stats.window import WindowSpec


class StatsTable:
    """Per-device statistics for one input partition.

    Self-contained (no shared watermark), so a table can be snapshotted with
    :meth:`to_state` and resumed elsewhere with :meth:`from_state`.
    """

    __slots__ = ("_encoded", "devices", "late", "spec")

    def __init__(self, spec: WindowSpec) -> None:
        self.spec = spec
        self.devices: dict[str, DeviceStats] = {}
        # Readings that were late for their device's window (they still count in the
        # running statistics).
        self.late = 0
        # What to_document(reuse=True) encoded last, for the next one (see _encoded_states).
        self._encoded: dict[str, tuple[DeviceStats, int, orjson.Fragment]] = {}

    def __repr__(self) -> str:
        return f"StatsTable({self.spec!r}, devices={len(self.devices)}, late={self.late})"

    def add(self, key: str, value: float, event_us: int) -> DeviceStats:
        """Add one reading of device `key`; return that device's (updated) statistics."""
        try:
            device = self.devices[key]
        except KeyError:
            device = self.devices[key] = DeviceStats(self.spec)
        if not device.add(value, event_us):
            self.late += 1
        return device

    def to_state(self) -> dict[str, Any]:
        """JSON-able snapshot: ``{"late": n, "devices": {key: DeviceStats.to_state()}}``."""
        return {"late": self.late, "devices": dict(self.device_states())}

    def to_document(self, *, reuse: bool = False) -> dict[str, Any]:
        """:meth:`to_state` for :func:`~iotmon.state.encoding.encode_document`: the devices are
        encoded a chunk at a time, never all built as objects at once. With ``reuse``, a
        device unchanged since the previous ``reuse`` call is not encoded again, for the
        memory of keeping each device's encoded state until then."""
        if reuse:
            devices: Iterator[tuple[str, Any]] = self._encoded_states()
        else:
            self._encoded = {}
            devices = self.device_states()
        return {"late": self.late, "devices": Chunked(devices)}

    def device_states(self) -> Iterator[tuple[str, DeviceState]]:
        """The ``devices`` member of :meth:`to_state`, one device at a time."""
        for key, device in self.devices.items():
            yield key, device.to_state()

    def _encoded_states(self) -> Iterator[tuple[str, orjson.Fragment]]:
        """:meth:`device_states`, each state already encoded, and kept for the next call.
        A kept one is used again while its device is the same object with the same count:
        every change to a device's statistics adds a reading (late ones too)."""
        previous = self._encoded
        # Replaced before the first device: a pass left unfinished keeps what it got to.
        kept = self._encoded = {}
        for key, device in self.devices.items():
            count = device.count
            entry = previous.get(key)
            if entry is None or entry[0] is not device or entry[1] != count:
                # Copied: orjson.dumps leaves its output in a buffer of kilobytes.
                encoded = memoryview(orjson.dumps(device.to_state())).tobytes()
                entry = (device, count, orjson.Fragment(encoded))
            kept[key] = entry
            yield key, entry[2]

    @classmethod
    def from_state(cls, spec: WindowSpec, state: object) -> StatsTable:
        """Rebuild from :meth:`to_state` output; ValueError if the state is malformed."""
        if not isinstance(state, dict):
            raise ValueError(f"stats table state must be a dict, got {type(state).__name__}")
        if state.keys() != {"late", "devices"}:
            raise ValueError(
                "stats table state must have exactly the keys 'late' and 'devices', "
                f"got {sorted(map(str, state))}"
            )
        late = state["late"]
        devices = state["devices"]
        if not isinstance(late, int) or isinstance(late, bool) or late < 0:
            raise ValueError(f"stats table state: 'late' must be an int >= 0, got {late!r}")
        if not isinstance(devices, dict):
            raise ValueError(
                "stats table state: 'devices' must map device key to device state, "
                f"got {type(devices).__name__}"
            )
        table = cls(spec)
        table.late = late
        table_devices = table.devices
        for key, device_state in devices.items():
            if not isinstance(key, str):
                raise ValueError(f"stats table state: device key must be a str, got {key!r}")
            try:
                table_devices[key] = DeviceStats.from_state(spec, device_state)
            except ValueError as exc:
                raise ValueError(f"stats table state: device {key!r}: {exc}") from exc
        return table
