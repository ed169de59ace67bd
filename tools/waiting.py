"""Waiting for an observable condition with a deadline: the one way the tools and the tests wait.

Nothing here sleeps and hopes: ``wait_for`` polls a probe until it returns something, and a
timeout fails with a message that says what was awaited and what was last seen. ``read_or_none``
turns a read into the shape a probe returns (the object, or None while it does not exist).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio
from kubernetes_asyncio.client.rest import ApiException

T = TypeVar("T")


async def wait_for(
    probe: Callable[[], Awaitable[T | None]],
    *,
    timeout: float,
    what: str,
    interval: float = 0.05,
) -> T:
    """Call ``probe`` until it returns something truthy; return that value, or fail after ``timeout``."""
    last: object = None
    with anyio.move_on_after(timeout):
        while True:
            last = await probe()
            if last:
                return last
            await anyio.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}; last seen: {last!r}")


async def read_or_none(call: Awaitable[T]) -> T | None:
    """The object, or None on 404."""
    try:
        return await call
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
