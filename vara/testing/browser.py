"""Headless Chromium for tests of the HTML report: the DOM after loading, or a live page to
ask questions of (has every image decoded?) and to screenshot.

    dom = dump_dom(html_path, profile_dir)                     # the page as Chromium parsed it
    with Page(html_path, profile_dir) as page:
        page.evaluate("document.images.length")                # JavaScript, value returned
        page.screenshot(tmp_path / "report.png")

``Page`` speaks the DevTools protocol over ``--remote-debugging-pipe`` (JSON messages ending
in a NUL byte on file descriptors 3 and 4 of the browser), so it needs nothing beyond the
standard library and Debian's ``chromium``: no WebDriver, no websocket client, no port.
The report itself has no scripts; the JavaScript runs from the test's side of the protocol.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

__all__ = ["CHROMIUM", "Page", "chromium_command", "dump_dom"]

CHROMIUM = "/usr/bin/chromium"
_TIMEOUT_S = 120.0  # one protocol answer or a DOM dump; a cold start on a busy box is slow
# Offline and quiet: nothing phones home, so a sandbox without network does not stall it.
_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


def chromium_command(profile_dir: str | Path, *extra: str) -> list[str]:
    """The browser's command line with its own throwaway profile (two runs never share one)."""
    return [CHROMIUM, *_FLAGS, f"--user-data-dir={profile_dir}", *extra]


def dump_dom(html_path: str | Path, profile_dir: str | Path) -> str:
    """The DOM of a local page after Chromium has loaded it (``--dump-dom``)."""
    url = Path(html_path).resolve().as_uri()
    cmd = chromium_command(profile_dir, "--dump-dom", url)
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=_TIMEOUT_S, check=True
    ).stdout


def _high_dup(fd: int) -> int:
    """A copy of ``fd`` numbered 10 or above, so moving it onto 3 or 4 clobbers nothing."""
    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)


class Page:
    """One page of a headless Chromium driven over the DevTools pipe; a context manager."""

    def __init__(self, html_path: str | Path, profile_dir: str | Path, *, width: int = 1280):
        self.url = Path(html_path).resolve().as_uri()
        self.width = width
        self._profile = profile_dir
        self._next_id = 0
        self._events: list[dict[str, Any]] = []
        self._buf = b""

    def __enter__(self) -> Page:
        to_browser, from_browser = os.pipe(), os.pipe()
        child_in, child_out = _high_dup(to_browser[0]), _high_dup(from_browser[1])

        def wire() -> None:  # in the child: the protocol's fixed descriptors
            os.dup2(child_in, 3)
            os.dup2(child_out, 4)

        cmd = chromium_command(self._profile, "--remote-debugging-pipe", "about:blank")
        self._proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=wire,
            close_fds=False,
        )
        for fd in (to_browser[0], from_browser[1], child_in, child_out):
            os.close(fd)
        self._write, self._read = to_browser[1], from_browser[0]
        try:
            self._open()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._send("Browser.close", session=False)
        except (OSError, RuntimeError, TimeoutError):
            pass
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        for fd in (self._write, self._read):
            os.close(fd)

    def _open(self) -> None:
        """A fresh tab at the page's URL, loaded (its load event fired)."""
        target = self.call("Target.createTarget", {"url": "about:blank"}, session=False)
        attached = self.call(
            "Target.attachToTarget",
            {"targetId": target["targetId"], "flatten": True},
            session=False,
        )
        self._session = attached["sessionId"]
        self.call("Page.enable")
        metrics = {"width": self.width, "height": 900, "deviceScaleFactor": 1, "mobile": False}
        self.call("Emulation.setDeviceMetricsOverride", metrics)
        self.call("Page.navigate", {"url": self.url})
        self._wait_event("Page.loadEventFired")

    def _send(self, method: str, params: dict[str, Any] | None = None, *, session=True) -> int:
        self._next_id += 1
        msg: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = self._session
        os.write(self._write, json.dumps(msg).encode() + b"\0")
        return self._next_id

    def _message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buf:
            if time.monotonic() > deadline:
                raise TimeoutError(f"chromium did not answer in {_TIMEOUT_S:.0f} s")
            chunk = os.read(self._read, 1 << 16)
            if not chunk:
                raise RuntimeError(f"chromium exited (code {self._proc.poll()})")
            self._buf += chunk
        raw, _, self._buf = self._buf.partition(b"\0")
        return json.loads(raw)

    def call(self, method: str, params: dict[str, Any] | None = None, *, session=True) -> Any:
        """Send one DevTools command and return its result; an error answer raises."""
        sent = self._send(method, params, session=session)
        deadline = time.monotonic() + _TIMEOUT_S
        while True:
            msg = self._message(deadline)
            if msg.get("id") == sent:
                if "error" in msg:
                    raise RuntimeError(f"chromium {method}: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self._events.append(msg)

    def _wait_event(self, method: str) -> dict[str, Any]:
        deadline = time.monotonic() + _TIMEOUT_S
        while True:
            for k, event in enumerate(self._events):
                if event["method"] == method:
                    return self._events.pop(k)
            msg = self._message(deadline)
            if "method" in msg:
                self._events.append(msg)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (JSON-serialisable values)."""
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression!r} raised: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, path: str | Path, *, height: int = 900) -> Path:
        """A PNG of the viewport (``width`` x ``height`` CSS pixels) as the page is scrolled."""
        self.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": self.width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )
        shot = self.call("Page.captureScreenshot", {"format": "png"})
        path = Path(path)
        path.write_bytes(base64.b64decode(shot["data"]))
        return path
