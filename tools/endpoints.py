"""Several OpenAI-compatible servers of one role (vLLM replicas) behind one ``ChatModel``.

A graph sees one client, as with one server: ``EndpointPool.complete`` builds the request
once (the model, or LoRA adapter, is addressed by name on every replica) and sends it to the
replica with the fewest requests in flight (ties: the one asked least), so a slow replica
gets less work without any tuning. A try that fails in a way another try may fix
(``tools.transport.RetryableError``) moves to another replica at once; a replica that looks gone
or broken (refused, reset, 5xx) is taken out of rotation, and a watcher thread, alive only
while some replica is out, checks it every ``health_interval_s`` (GET /models, listing the
model) and puts it back. Backoff (``backoff_s``, doubling) applies only when every replica
in rotation has already failed this request, so one server behaves as ``OpenAIServer``.

A request is sent until it answers, at most ``max_retries + 1`` tries in all; its window
gets that one answer (or one recorded failure). When no replica is in rotation a request
still tries one (it is the quickest health check), and only when every replica refuses
connections is the error ``EndpointUnreachable`` naming them all: the run stops there,
since nothing can finish. ``stats()`` gives each replica's chat requests, errors and
latency for run.json.

``connect`` picks the client of a strategy's ``Endpoint``: a pool when it has URLs (one URL
is a pool of one), else the in-process engine.
"""

from __future__ import annotations

import math
import threading
import time
from array import array
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from vara.config import Endpoint
from vara.errors import ConfigError, EndpointError, EndpointUnreachable, InputError
from vara.tools.chat import ChatModel
from vara.tools.transport import RetryableError, Transport, gave_up
from vara.tools.vlm import ServedChat, only_served_model

__all__ = ["EndpointPool", "EndpointStats", "connect", "endpoint_report", "merge_endpoint_reports"]

_HEALTH_TIMEOUT_S = 5.0  # a health check is one small GET: a replica slower than this is out


@dataclass(frozen=True)
class EndpointStats:
    """One replica's chat requests since the pool was made (tries, retries included)."""

    url: str
    in_rotation: bool
    requests: int
    errors: int  # tries that failed, whatever the error
    taken_out: int  # times a failure took it out of rotation
    mean_latency_s: float | None  # of the tries it answered
    p95_latency_s: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Replica:
    """One server of a pool and its counters; read and written only under the pool's lock."""

    def __init__(self, index: int, transport: Transport):
        self.index = index
        self.transport = transport
        self.up = True
        self.outstanding = 0
        self.picked = 0
        self.requests = 0
        self.errors = 0
        self.taken_out = 0
        self.latencies = array("d")  # 8 bytes a request: exact p95 at any run length

    def stats(self) -> EndpointStats:
        lat = sorted(self.latencies)
        p95 = lat[math.ceil(0.95 * len(lat)) - 1] if lat else None
        mean = sum(lat) / len(lat) if lat else None
        return EndpointStats(
            self.transport.url,
            self.up,
            self.requests,
            self.errors,
            self.taken_out,
            None if mean is None else round(mean, 4),
            None if p95 is None else round(p95, 4),
        )


class EndpointPool(ServedChat):
    """A ChatModel over replicas of one model (see the module docstring)."""

    def __init__(
        self,
        urls: Sequence[str],
        model: str | None = None,
        *,
        api_key: str = "EMPTY",
        timeout_s: float = 120.0,
        max_concurrency: int = 8,
        max_retries: int = 3,
        backoff_s: float = 0.5,
        health_interval_s: float = 5.0,
    ):
        clean = [u.rstrip("/") for u in urls]
        if not clean or len(set(clean)) != len(clean):
            raise InputError(
                f"endpoint URLs {list(urls)}: give each replica's URL once (--vlm-url URL, "
                "repeated per replica)"
            )
        self._replicas = []
        for i, url in enumerate(clean):
            transport = Transport(
                url, api_key=api_key, timeout_s=timeout_s, max_concurrency=max_concurrency
            )
            self._replicas.append(_Replica(i, transport))
        self._max_retries = max_retries
        self._backoff_s = backoff_s
        self._health_interval_s = health_interval_s
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._watcher: threading.Thread | None = None
        self._identity: str | None = None
        self.model_id: str | None = model  # health checks before discovery accept any model
        if model is None:
            models, url = self._send("GET", "/models")
            self.model_id = only_served_model(url, models)

    @property
    def urls(self) -> tuple[str, ...]:
        return tuple(r.transport.url for r in self._replicas)

    def _models(self) -> dict[str, Any]:
        return self._send("GET", "/models")[0]

    def _post(self, body: dict[str, Any], n_images: int) -> tuple[dict[str, Any], str]:
        return self._send("POST", "/chat/completions", json=body, n_images=n_images, record=True)

    def stats(self) -> tuple[EndpointStats, ...]:
        with self._lock:
            return tuple(r.stats() for r in self._replicas)

    def close(self) -> None:
        self._closed.set()  # wakes the watcher, which then ends
        for r in self._replicas:
            r.transport.close()

    def _send(
        self, method: str, path: str, *, record: bool = False, **kw: Any
    ) -> tuple[dict[str, Any], str]:
        """(reply, URL of the replica that gave it), failing over as the module says."""
        tried: set[int] = set()
        last: dict[int, RetryableError] = {}
        waits = 0
        for _ in range(self._max_retries + 1):
            if tried and not self._untried_in_rotation(tried):
                time.sleep(self._backoff_s * 2**waits)
                waits += 1
            replica = self._pick(tried)
            tried.add(replica.index)
            start = time.perf_counter()
            try:
                reply = replica.transport.send(method, path, **kw)
            except RetryableError as exc:
                self._release(replica, record, failure=exc)
                last[replica.index] = exc
                continue
            except EndpointError as exc:  # an answer no replica would change: the window's
                self._release(replica, record, failure=exc)
                raise
            self._release(replica, record, latency_s=time.perf_counter() - start)
            return reply, replica.transport.url
        raise self._gave_up(last, replica.index)

    def _untried_in_rotation(self, tried: set[int]) -> bool:
        with self._lock:
            return any(r.up and r.index not in tried for r in self._replicas)

    def _pick(self, tried: set[int]) -> _Replica:
        """The least busy replica in rotation, one not yet tried by this request first; with
        none in rotation, the least busy of all (the request is the health check)."""
        with self._lock:
            up = [r for r in self._replicas if r.up]
            fresh = [r for r in up if r.index not in tried]
            replica = min(fresh or up or self._replicas, key=lambda r: (r.outstanding, r.picked))
            replica.outstanding += 1
            replica.picked += 1
            return replica

    def _release(
        self,
        replica: _Replica,
        record: bool,
        *,
        latency_s: float | None = None,
        failure: Exception | None = None,
    ) -> None:
        with self._lock:
            replica.outstanding -= 1
            if record:
                replica.requests += 1
                replica.errors += failure is not None
                if latency_s is not None:
                    replica.latencies.append(latency_s)
            if failure is None:
                replica.up = True  # it answered: back in rotation without waiting for a check
            elif isinstance(failure, RetryableError) and failure.server_down and replica.up:
                replica.up = False
                replica.taken_out += 1
                self._watch_locked()

    def _watch_locked(self) -> None:
        """Start the health watcher unless it runs (the caller holds the lock)."""
        if self._watcher is None and not self._closed.is_set():
            self._watcher = threading.Thread(target=self._watch, name="vara-health", daemon=True)
            self._watcher.start()

    def _watch(self) -> None:
        """Every ``health_interval_s``, check the replicas out of rotation; end when none is."""
        while not self._closed.wait(self._health_interval_s):
            with self._lock:
                out = [r for r in self._replicas if not r.up]
                if not out:
                    self._watcher = None
                    return
            for r in out:
                if r.transport.serves(self.model_id, _HEALTH_TIMEOUT_S):
                    with self._lock:
                        r.up = True

    def _gave_up(self, last: dict[int, RetryableError], final: int) -> EndpointError:
        """Unreachable when every replica tried refused connections and none is in rotation
        (the run stops); else the window fails with the last try's error."""
        url, error, tries = self._replicas[final].transport.url, last[final], self._max_retries + 1
        with self._lock:
            none_up = not any(r.up for r in self._replicas)
        refused = none_up and all(e.refused for e in last.values())
        if refused and len(self._replicas) > 1:
            return EndpointUnreachable(
                f"cannot reach a model server at any of {', '.join(self.urls)} "
                f"({type(error.cause).__name__}); start them (`vara serve MODEL`, or `vllm serve "
                "MODEL`) or fix --vlm-url/--llm-url"
            )
        if error.refused and not refused:  # others still answer
            return EndpointError(
                f"no replica answered in {tries} tries (the last, {url}, refused the "
                "connection); raise vlm.max_retries / llm.max_retries (e.g. --set "
                "vlm.max_retries=6)"
            )
        return gave_up(url, error.cause, tries)


def connect(endpoint: Endpoint) -> ChatModel:
    """A pool of the endpoint's replicas when it has URLs, else the in-process engine."""
    if endpoint.urls and endpoint.adapter:
        raise ConfigError(
            f"adapter {endpoint.adapter!r} is applied in-process only: with a server, serve it "
            "(vara serve BASE --lora NAME=DIR) and select it with --set vlm.model=NAME"
        )
    if endpoint.urls:
        return EndpointPool(
            endpoint.urls,
            endpoint.model,
            api_key=endpoint.api_key,
            timeout_s=endpoint.timeout_s,
            max_concurrency=endpoint.max_concurrency,
            max_retries=endpoint.max_retries,
            health_interval_s=endpoint.health_interval_s,
        )
    if not endpoint.model:
        raise EndpointError("no model given: pass --vlm-model (hub id or local path) or --vlm-url")
    from vara.tools.local_engine import LocalEngine

    # Its weights load when the run is known to go ahead (tools.chat.load_now).
    return LocalEngine(endpoint.model, adapter=endpoint.adapter, lazy=True)


def endpoint_report(models: dict[str, ChatModel | None]) -> dict[str, list[dict[str, Any]]]:
    """Role -> each replica's stats, for the roles served by a pool; a role whose client is
    another role's (the LLM that is the VLM) is listed once, under the first role."""
    report: dict[str, list[dict[str, Any]]] = {}
    seen: set[int] = set()
    for role, model in models.items():
        if isinstance(model, EndpointPool) and id(model) not in seen:
            seen.add(id(model))
            report[role] = [s.to_dict() for s in model.stats()]
    return report


def merge_endpoint_reports(
    reports: Sequence[dict[str, list[dict[str, Any]]]],
) -> dict[str, list[dict[str, Any]]]:
    """Several processes' ``endpoint_report``s (Ray workers) as one: per role and URL, the
    requests, errors and times taken out summed, in rotation if it is in every report, the
    mean latency weighted by answered tries, and the p95 the highest of the reports' p95s
    (an upper bound: the tries themselves stay in their processes)."""
    merged: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for report in reports:
        for role, replicas in report.items():
            for r in replicas:
                merged.setdefault(role, {}).setdefault(r["url"], []).append(r)
    out: dict[str, list[dict[str, Any]]] = {}
    for role, by_url in merged.items():
        out[role] = []
        for url, rows in by_url.items():
            answered = [(r["requests"] - r["errors"], r["mean_latency_s"]) for r in rows]
            weight = sum(n for n, mean in answered if mean is not None)
            p95s = [r["p95_latency_s"] for r in rows if r["p95_latency_s"] is not None]
            mean = sum(n * m for n, m in answered if m is not None) / weight if weight else None
            stats = EndpointStats(
                url=url,
                in_rotation=all(r["in_rotation"] for r in rows),
                requests=sum(r["requests"] for r in rows),
                errors=sum(r["errors"] for r in rows),
                taken_out=sum(r["taken_out"] for r in rows),
                mean_latency_s=None if mean is None else round(mean, 4),
                p95_latency_s=max(p95s) if p95s else None,
            )
            out[role].append(stats.to_dict())
    return out
