"""Versioned values that callers wait on: how routers and the proxy hear of changes at once.

    controller: publish(key, value)           version += 1, wake every listener of key
    router:     listen(key, known_version)    returns (version, value) as soon as version != known,
                                              or the unchanged value after ``timeout_s``

A plain asyncio class used on the controller's event loop; callers reach ``listen`` through the
controller actor's ``listen_for_change`` method (async actor calls run concurrently, so a waiting
listener holds no thread).
"""

from __future__ import annotations

import asyncio
from typing import Any, Hashable


class LongPollHost:
    def __init__(self) -> None:
        self._versions: dict[Hashable, int] = {}
        self._values: dict[Hashable, Any] = {}
        self._changed: dict[Hashable, asyncio.Event] = {}

    def publish(self, key: Hashable, value: Any) -> None:
        self._versions[key] = self._versions.get(key, 0) + 1
        self._values[key] = value
        event = self._changed.pop(key, None)
        if event is not None:
            event.set()

    def get(self, key: Hashable) -> Any:
        return self._values.get(key)

    def version(self, key: Hashable) -> int:
        return self._versions.get(key, 0)

    async def listen(self, key: Hashable, known_version: int, timeout_s: float) -> tuple[int, Any]:
        if self.version(key) == known_version:
            event = self._changed.setdefault(key, asyncio.Event())
            try:
                await asyncio.wait_for(event.wait(), timeout_s)
            except asyncio.TimeoutError:
                pass
        return self.version(key), self._values.get(key)

    def wake_all(self) -> None:
        """Release every listener now (on shutdown), each with the current value."""
        for event in self._changed.values():
            event.set()
        self._changed.clear()
