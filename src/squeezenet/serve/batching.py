"""Dynamic batching: images from concurrent requests share one forward pass.

Each image waits in a queue with a future. One task takes up to ``max_batch``
of them, waiting at most ``max_wait_ms`` after the first for others to
arrive, runs the model once on them in the model's own thread, and hands
each request back its row of logits. ``max_batch=1`` is one-at-a-time
serving. It waits only while other requests are being decoded (they
announce themselves with ``expecting``): a lone client pays no wait.

Every torch computation of the server happens in that one thread: once a
second Python thread has run a parallel kernel, torch's OpenMP threads
share the cores with a second team, and a forward pass took twice as long
(measured: 10 ms for v1.1 at 227 in one thread, 20 ms after another thread
had summed a tensor).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import SqueezeNetError, one_line


class ModelFailure(SqueezeNetError):
    """The model raised while running a batch: a server error, not the client's."""


@dataclass
class _Waiting:
    image: torch.Tensor
    answer: asyncio.Future[np.ndarray]


class Batcher:
    """Groups queued images into batches for ``run`` (the images -> logits (N, classes)), called in ``thread``.

    ``on_batch(size, seconds)`` and ``on_queue(depth)`` report to the metrics.
    """

    def __init__(self, run: Callable[[list[torch.Tensor]], np.ndarray], thread: concurrent.futures.Executor, *,
                 max_batch: int, max_wait_ms: float,
                 on_batch: Callable[[int, float], None] = lambda size, seconds: None,
                 on_queue: Callable[[int], None] = lambda depth: None) -> None:
        if max_batch < 1:
            raise SqueezeNetError(f"max_batch must be at least 1, got {max_batch}")
        if max_wait_ms < 0:
            raise SqueezeNetError(f"max_wait_ms must be 0 or more, got {max_wait_ms}")
        self.run, self.max_batch, self.max_wait = run, max_batch, max_wait_ms / 1000
        self.on_batch, self.on_queue = on_batch, on_queue
        self._queue: collections.deque[_Waiting] = collections.deque()
        self._arrived = asyncio.Event()
        self._closing = False
        self._expected = 0  # images of requests being read or decoded, on their way to the queue
        self._thread = thread
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._serve(), name="squeezenet-batcher")

    async def stop(self) -> None:
        """Answer everything queued, then stop (a SIGTERM drains, it does not drop)."""
        self._closing = True
        self._arrived.set()
        if self._task is not None:
            await self._task

    @property
    def depth(self) -> int:
        return len(self._queue)

    @contextlib.contextmanager
    def expecting(self, count: int) -> Iterator[None]:
        """Around a request's decoding: a batch being formed waits for these ``count`` images."""
        self._expected += count
        try:
            yield
        finally:
            self._expected -= count
            self._arrived.set()  # they are queued now, or failed: either way the batcher looks again

    async def submit(self, images: list[torch.Tensor] | torch.Tensor) -> np.ndarray:
        """Logits (N, classes) for N images, each run with whatever else is queued."""
        if self._closing:
            raise ModelFailure("the server is shutting down")
        loop = asyncio.get_running_loop()
        waiting = [_Waiting(image, loop.create_future()) for image in images]
        self._queue.extend(waiting)
        self.on_queue(len(self._queue))
        self._arrived.set()
        return np.stack(await asyncio.gather(*(item.answer for item in waiting)))

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._queue:
                if self._closing:
                    return
                self._arrived.clear()
                await self._arrived.wait()
            deadline = loop.time() + self.max_wait
            while len(self._queue) < self.max_batch and self._expected > 0 and not self._closing:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), remaining)
                except asyncio.TimeoutError:
                    break
            batch = [self._queue.popleft() for _ in range(min(self.max_batch, len(self._queue)))]
            self.on_queue(len(self._queue))
            await self._answer(loop, batch)

    async def _answer(self, loop: asyncio.AbstractEventLoop, batch: list[_Waiting]) -> None:
        started = time.perf_counter()
        try:
            scores = await loop.run_in_executor(self._thread, self.run, [item.image for item in batch])
            if scores.shape[0] != len(batch):
                raise ValueError(f"the model answered {scores.shape[0]} rows for {len(batch)} images")
        except Exception as error:  # any backend's failure becomes the batch's answer, and the server goes on
            failure = ModelFailure(f"the model failed on a batch of {len(batch)}: {one_line(error)}")
            for item in batch:
                if not item.answer.done():
                    item.answer.set_exception(failure)
            return
        self.on_batch(len(batch), time.perf_counter() - started)
        for item, row in zip(batch, scores, strict=True):
            if not item.answer.done():  # a client that went away cancelled its future
                item.answer.set_result(row)
