"""A fault-injecting HTTP proxy for an OpenAI-compatible server (the fault suite's network).

It listens on 127.0.0.1 and forwards every request to the real server, except that a POST's
reply may, by a seeded coin (or a scripted list of fates first), be:

    500        an HTTP 500 error (the request never reaches the server)
    truncate   a 200 whose body is cut in half (a proxy that lost the tail; valid HTTP)
    reset      the headers and half the body, then the connection is closed mid-reply
    slow       the real reply after ``slow_s`` seconds (past a client's timeout)

``stop()`` closes the port, as a dead server's would be (connections are refused), and
``start()`` opens it again on the same port, as a restarted one. Each request's fate is
logged (``log``, ``counts()``), so a test counts faults from the proxy's own record.

    with FaultProxy(server.url, Faults(p_500=0.2, p_truncate=0.1, seed=0)) as proxy:
        run(..., vlm_url=proxy.url)
    proxy.counts()   # Counter({'ok': 71, '500': 19, 'truncate': 9})

``StandInServer`` is the same listener answering by itself, an OpenAI-compatible stand-in with
a fixed service time and capacity (replica benchmarks, balancing tests: it measures the
client, not a model).

What the fault scenarios share: ``FAST_RUN_FLAGS`` (small requests, no caption cache, so every
window asks the server), ``stop_after_posts`` (a server killed mid-run) and
``check_one_per_window`` (the suite's guarantee, checked on an out dir).
"""

from __future__ import annotations

import http.client
import json
import random
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from vara.records import read_jsonl
from vara.types import LabelSet

__all__ = [
    "FAST_RUN_FLAGS",
    "FaultProxy",
    "Faults",
    "StandInServer",
    "check_one_per_window",
    "stop_after_posts",
]

# `vara run` flags for small requests and no caption cache: every window asks the server.
FAST_RUN_FLAGS = (
    *("--frames", "2", "--max-side", "64", "--set", "generation.caption_max_tokens=16"),
    *("--no-cache", "--no-progress"),
)

FATES = ("500", "truncate", "reset", "slow")


@dataclass(frozen=True)
class Faults:
    """Probabilities of each fate for a POST (the rest are forwarded as they are)."""

    p_500: float = 0.0
    p_truncate: float = 0.0
    p_reset: float = 0.0
    p_slow: float = 0.0
    slow_s: float = 5.0
    seed: int = 0
    script: tuple[str, ...] = field(default=())  # fates of the first POSTs, then the coins

    def __post_init__(self) -> None:
        bad = [f for f in self.script if f not in (*FATES, "ok")]
        if bad or self.p_500 + self.p_truncate + self.p_reset + self.p_slow > 1:
            raise ValueError(f"Faults: unknown fates {bad} or probabilities over 1")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the real server: clients pool connections

    def setup(self) -> None:
        super().setup()
        self.server.proxy._open.add(self.connection)  # type: ignore[attr-defined]

    def finish(self) -> None:
        self.server.proxy._open.discard(self.connection)  # type: ignore[attr-defined]
        super().finish()

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._serve("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._serve("POST")

    def _serve(self, method: str) -> None:
        proxy: FaultProxy = self.server.proxy  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        fate = proxy.fate(method, self.path)
        if fate == "500":
            self._reply(500, b'{"error": {"message": "injected fault (fault proxy)"}}')
            return
        if fate == "slow":
            time.sleep(proxy.faults.slow_s)
        status, data = proxy.forward(method, self.path, body, self.headers.get("Content-Type"))
        if fate == "truncate":
            self._reply(status, data[: len(data) // 2])
        elif fate == "reset":
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
        else:
            self._reply(status, data)

    def _reply(self, status: int, data: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


class FaultProxy:
    def __init__(self, upstream: str, faults: Faults = Faults(), *, port: int = 0):
        parts = urlsplit(upstream)
        self._host, self._port = parts.hostname or "127.0.0.1", parts.port or 80
        self._prefix = parts.path.rstrip("/")  # e.g. /v1
        self.faults = faults
        self._rng = random.Random(faults.seed)
        self._script = list(faults.script)
        self._lock = threading.Lock()
        self.log: list[tuple[str, str, str]] = []  # (method, path, fate)
        self._listen_port = port
        self._server: ThreadingHTTPServer | None = None
        self._open: set[socket.socket] = set()  # client connections (kept alive)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._listen_port}{self._prefix}"

    def fate(self, method: str, path: str) -> str:
        with self._lock:
            if method != "POST":
                chosen = "ok"
            elif self._script:
                chosen = self._script.pop(0)
            else:
                chosen = self._coin()
            self.log.append((method, path, chosen))
        return chosen

    def _coin(self) -> str:
        f, x = self.faults, self._rng.random()
        for fate, p in (("500", f.p_500), ("truncate", f.p_truncate), ("reset", f.p_reset)):
            if x < p:
                return fate
            x -= p
        return "slow" if x < f.p_slow else "ok"

    def forward(self, method: str, path: str, body: bytes, content_type: str | None):
        conn = http.client.HTTPConnection(self._host, self._port, timeout=600)
        try:
            headers = {"Content-Type": content_type} if content_type else {}
            conn.request(method, path, body=body or None, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def counts(self) -> Counter:
        with self._lock:
            return Counter(fate for _, _, fate in self.log)

    def counts_posts(self) -> int:
        """POSTs seen so far (chat requests; GETs are model lists and health checks)."""
        with self._lock:
            return sum(1 for method, _, _ in self.log if method == "POST")

    def start(self) -> FaultProxy:
        """Listen (again, on the same port after ``stop``)."""
        server = ThreadingHTTPServer(("127.0.0.1", self._listen_port), _Handler)
        server.daemon_threads = True
        server.proxy = self  # type: ignore[attr-defined]
        self._listen_port = server.server_port
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self._server = server
        return self

    def stop(self) -> None:
        """Close the port and every open connection, as a server that died would: new
        connections are refused."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        for conn in list(self._open):
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class StandInServer(FaultProxy):
    """An OpenAI-compatible server that answers by itself: GET /v1/models lists ``model``;
    a chat completion takes ``service_s`` with at most ``capacity`` served at once (the rest
    queue, as in a busy vLLM) and answers ``caption``, or, under a ``response_format`` JSON
    schema, the simplest instance of it whose free text is ``caption`` (so an evidence quote
    is found in the caption it cites). Faults, the log, ``stop`` and ``start`` are the
    proxy's.

        with StandInServer(service_s=0.05, capacity=4) as a, StandInServer() as b:
            pool = EndpointPool([a.url, b.url], "stand-in")
    """

    def __init__(
        self,
        model: str = "stand-in",
        *,
        service_s: float = 0.05,
        capacity: int = 4,
        caption: str = "a person waves both hands",
        faults: Faults = Faults(),
        port: int = 0,
    ):
        super().__init__("http://127.0.0.1/v1", faults, port=port)
        self.model, self.service_s, self.caption = model, service_s, caption
        self._capacity = threading.BoundedSemaphore(capacity)

    def forward(self, method: str, path: str, body: bytes, content_type: str | None):
        if method == "GET" and path.endswith("/models"):
            cards = [{"id": self.model, "object": "model", "root": None}]
            return 200, json.dumps({"object": "list", "data": cards}).encode()
        if method != "POST" or not path.endswith("/chat/completions"):
            return 404, b'{"error": {"message": "not found (stand-in server)"}}'
        request = json.loads(body)
        if request.get("model") != self.model:
            return 404, json.dumps(
                {"error": {"message": f"model {request.get('model')!r} does not exist"}}
            ).encode()
        with self._capacity:
            time.sleep(self.service_s)
        schema = ((request.get("response_format") or {}).get("json_schema") or {}).get("schema")
        text = self.caption if schema is None else json.dumps(_instance(schema, self.caption))
        reply = {
            "object": "chat.completion",
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1},
        }
        return 200, json.dumps(reply).encode()


def _instance(schema: dict, text: str):
    """The simplest instance of a JSON schema: first enum values, one item per array (or
    minItems), every property, ``text`` for free strings."""
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object":
        return {k: _instance(v, text) for k, v in schema.get("properties", {}).items()}
    if kind == "array":
        n = min(max(schema.get("minItems", 0), 1), schema.get("maxItems", 1))
        return [_instance(schema.get("items", {}), text)] * n
    if kind in ("integer", "number"):
        return schema.get("minimum", 0)
    return {"string": text, "boolean": True}.get(kind)


def stop_after_posts(proxy: FaultProxy, n_posts: int, timeout_s: float = 600.0) -> threading.Thread:
    """A started thread that stops ``proxy`` (a server killed mid-run) once it has seen
    ``n_posts`` POSTs; join it to know the kill happened."""

    def kill() -> None:
        deadline = time.monotonic() + timeout_s
        while proxy.counts_posts() < n_posts and time.monotonic() < deadline:
            time.sleep(0.01)
        proxy.stop()

    thread = threading.Thread(target=kill, daemon=True)
    thread.start()
    return thread


def check_one_per_window(out: Path, n_windows: int, labelset: LabelSet) -> list[dict]:
    """The fault suite's guarantee on an out dir: exactly one prediction per window, and no
    label or evidence ref outside what the schema allows. Returns the predictions."""
    preds = read_jsonl(out / "predictions.jsonl")
    assert len(preds) == len({p["clip_id"] for p in preds}) == n_windows
    for p in preds:
        assert set(p["labels"]) <= set(labelset.names)
        refs = {f"caption:{i}" for i in range(1, len(p["captions"]) + 1)}
        assert {e["ref"] for e in p["evidence"]} <= refs
    return preds
