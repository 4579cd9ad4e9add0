"""Start, health-check and stop a vLLM OpenAI-compatible server as a subprocess.

``tools.server_options.ServerOptions`` holds the flags (``cpu_test_defaults()`` is the recipe
measured on the 2-core CPU machines, see docs/cpu-notes.md); ``VLLMServer`` launches
``python -m vllm.entrypoints.openai.api_server`` with them, waits until it truly serves
(``/health`` and then one real chat request with an image, because ``/health`` can be green
while the engine dies on its first request) and stops it by PID.

    opts = ServerOptions.cpu_test_defaults("/path/to/model")
    with VLLMServer(opts) as server:      # start + wait_ready; stop on exit
        print(server.url)                 # http://127.0.0.1:PORT/v1

This module never imports vLLM (it only launches it), so it imports fast. HTTP requests to
the server belong to tools/vlm.py; the one request here is a readiness probe.
"""

from __future__ import annotations

import atexit
import base64
import ctypes
import dataclasses
import io
import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import NoReturn

import httpx

from vara.errors import EndpointError
from vara.tools.server_options import ServerOptions

LOG_TAIL_LINES = 20


def _free_port(host: str) -> int:
    # Another process may take the port before vLLM binds it; wait_ready then reports the
    # server's own "address already in use" from the log.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:
    """Runs in the child: SIGTERM it if the launching process dies without stop()."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG; Linux only, a no-op elsewhere
    except (OSError, AttributeError):
        pass


def _probe_image_data_url() -> str:
    """A small PNG as a data URL: the readiness probe must exercise the vision tower."""
    import numpy as np
    from PIL import Image

    pixels = np.zeros((32, 48, 3), dtype=np.uint8)
    pixels[:, :24] = (200, 40, 40)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


class VLLMServer:
    """One vLLM server subprocess: ``start`` -> ``wait_ready`` -> ``url`` -> ``stop``.

    As a context manager it starts (logging to a temp file unless ``log_path`` is given),
    waits up to ``ready_timeout_s`` and stops on exit. ``die_with_parent`` asks Linux to
    SIGTERM the server if this process dies without stopping it (a killed test run must not
    leave a 2.4 GB server behind); it ties the server to the *thread* that starts it.
    """

    def __init__(
        self,
        options: ServerOptions,
        *,
        log_path: str | Path | None = None,
        ready_timeout_s: float = 300.0,
        die_with_parent: bool = True,
    ):
        self.options = options
        self.log_path = Path(log_path) if log_path else None
        self.ready_timeout_s = ready_timeout_s
        self.die_with_parent = die_with_parent
        self.ready_after_s: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._started_at = 0.0

    @property
    def url(self) -> str:
        """OpenAI base URL, e.g. ``http://127.0.0.1:8000/v1``."""
        if self.options.port == 0:
            raise EndpointError("the vLLM server has no port yet: call start() first")
        return f"http://{self.options.host}:{self.options.port}/v1"

    @property
    def model_name(self) -> str:
        return self.options.name

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, log_path: str | Path | None = None) -> VLLMServer:
        """Launch the server; output (stdout and stderr) goes to ``log_path``."""
        if self._proc is not None:
            raise EndpointError(f"vLLM server for '{self.options.model}' was already started")
        if log_path is not None:
            self.log_path = Path(log_path)
        if self.log_path is None:
            fd, name = tempfile.mkstemp(prefix="vllm-server-", suffix=".log")
            os.close(fd)
            self.log_path = Path(name)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        if self.options.port == 0:
            self.options = dataclasses.replace(self.options, port=_free_port(self.options.host))
        env = {**os.environ, **self.options.env()}
        with open(self.log_path, "ab") as log:  # the child keeps its own copy of the fd
            self._proc = subprocess.Popen(
                self.options.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                # Own process group: a SIGKILL fallback can reach the engine child too.
                start_new_session=True,
                preexec_fn=_die_with_parent if self.die_with_parent else None,
            )
        self._started_at = time.monotonic()
        atexit.register(self.stop)
        return self

    def wait_ready(self, timeout_s: float | None = None) -> float:
        """Block until /health is 200 and one image chat request succeeds; return seconds.

        Raises EndpointError with the log tail if the server exits or the time runs out.
        """
        if self._proc is None:
            raise EndpointError("call start() before wait_ready()")
        deadline = self._started_at + (timeout_s or self.ready_timeout_s)
        with httpx.Client(timeout=10.0) as client:
            self._wait_health(client, deadline)
            self._probe_chat(client, deadline)
        self.ready_after_s = time.monotonic() - self._started_at
        return self.ready_after_s

    def _wait_health(self, client: httpx.Client, deadline: float) -> None:
        health = self.url.removesuffix("/v1") + "/health"
        while True:
            self._raise_if_exited()
            try:
                if client.get(health).status_code == 200:
                    return
            except httpx.TransportError:
                pass  # not listening yet
            if time.monotonic() > deadline:
                self._fail(f"did not answer {health} within the timeout")
            time.sleep(0.5)

    def _probe_chat(self, client: httpx.Client, deadline: float) -> None:
        body = {
            "model": self.model_name,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": _probe_image_data_url()}},
                        {"type": "text", "text": "Describe the image."},
                    ],
                }
            ],
            "max_tokens": 4,
            "temperature": 0.0,
        }
        timeout = max(5.0, deadline - time.monotonic())
        try:
            resp = client.post(self.url + "/chat/completions", json=body, timeout=timeout)
        except httpx.TransportError as exc:
            self._raise_if_exited()
            self._fail(f"did not answer a probe chat request ({exc!r})")
        self._raise_if_exited()
        if resp.status_code != 200:
            self._fail(
                f"rejected a probe chat request with an image: "
                f"HTTP {resp.status_code} {resp.text[:500]}"
            )

    def _raise_if_exited(self) -> None:
        assert self._proc is not None
        code = self._proc.poll()
        if code is not None:
            self._fail(f"exited with code {code} before it was ready")

    def _fail(self, what: str) -> NoReturn:
        self.stop()
        raise EndpointError(
            f"vLLM server for model '{self.options.model}' {what}. "
            f"Last log lines:\n{self.log_tail()}\nFull log: {self.log_path}"
        )

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "(no log)"
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:]) or "(log is empty)"

    def stop(self, grace_s: float = 30.0) -> None:
        """SIGTERM the API server (it reaps its engine); SIGKILL its group after grace_s."""
        atexit.unregister(self.stop)
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                pass
        # Whatever is left in the group this class created (a hung server, or an engine
        # orphaned by a crashed server) would hold GBs of memory: kill it.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)

    def __enter__(self) -> VLLMServer:
        if self._proc is None:
            self.start()
        self.wait_ready()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
