"""``vara serve BASE --cpu --lora NAME=DIR ...`` in a subprocess, for tests that compare a
served LoRA adapter with the same adapter in-process (the real server, started the way a
user starts it)."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

__all__ = ["serve_adapters"]


@contextlib.contextmanager
def serve_adapters(
    base: str | Path,
    adapters: Mapping[str, str | Path],
    root: Path,
    *,
    max_images: int = 4,
    timeout_s: float = 400.0,
) -> Iterator[str]:
    """Yield the server's base URL once it answers; stop it (SIGTERM) on exit. A server that
    does not start raises RuntimeError with the tail of its log."""
    from vara.tools.vllm_server import _die_with_parent

    url_file, log = root / "url", root / "server.log"
    argv = [sys.executable, "-m", "vara.cli", "serve", str(base), "--cpu", "--port", "0"]
    for name, path in adapters.items():
        argv += ["--lora", f"{name}={path}"]
    argv += ["--url-file", str(url_file), "--log", str(log), "--max-images", str(max_images)]
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=_die_with_parent,
    )
    try:
        deadline = time.monotonic() + timeout_s
        while not url_file.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                tail = log.read_text()[-3000:] if log.exists() else "(no log)"
                raise RuntimeError(
                    f"vara serve --lora did not start:\n{proc.stdout.read()}\n{tail}"
                )
            time.sleep(1.0)
        yield url_file.read_text().strip()
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # vara serve stops its vLLM server, then exits
            proc.wait(timeout=90)
