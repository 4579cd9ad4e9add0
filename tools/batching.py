"""Batching for in-process scorers: the windows of concurrent callers scored together.

A run has ``concurrency`` windows in flight, each asking the scorer for its own scores. A
``Batcher`` wraps the scorer's ``score(items) -> rows`` (one row per item, in order): a
caller queues its items and, whoever gets the model next scores every item waiting at that
moment in one call, so batches fill without any caller waiting for a timer. One caller's
bad input does not fail the others batched with it: on an error, each caller's items are
scored alone and only the failing caller sees the error.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

__all__ = ["Batcher"]

T = TypeVar("T")


class _Request:
    __slots__ = ("items", "rows", "error")

    def __init__(self, items: Sequence[Any]):
        self.items = list(items)
        self.rows: Sequence[Any] | None = None
        self.error: Exception | None = None


class Batcher(Generic[T]):
    def __init__(self, score: Callable[[list[T]], Sequence[Any]]):
        self._score_fn = score
        self._model_lock = threading.Lock()  # one forward pass at a time
        self._queue_lock = threading.Lock()
        self._queue: list[_Request] = []

    def __call__(self, items: Sequence[T]) -> Sequence[Any]:
        """The rows of ``items``, scored with whatever else is waiting."""
        request = _Request(items)
        with self._queue_lock:
            self._queue.append(request)
        with self._model_lock:
            if request.rows is None and request.error is None:
                with self._queue_lock:  # nobody scored it while we waited: score the queue
                    waiting, self._queue = self._queue, []
                self._score(waiting)
        if request.error is not None:
            raise request.error
        return request.rows

    def _score(self, waiting: list[_Request]) -> None:
        try:
            rows = self._score_fn([item for r in waiting for item in r.items])
        except Exception:
            if len(waiting) == 1:
                raise
            for r in waiting:  # one caller's bad input must not fail the others
                try:
                    r.rows = self._score_fn(r.items)
                except Exception as exc:
                    r.error = exc
            return
        start = 0
        for r in waiting:
            r.rows = rows[start : start + len(r.items)]
            start += len(r.items)
