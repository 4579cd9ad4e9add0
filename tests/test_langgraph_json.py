"""langgraph.json: every strategy graph is listed, loads as ``langgraph dev`` loads it (the
file by path, the factory called with no arguments) and compiles; its default context makes
it run without ``context=``. LangSmith tracing: off unless its environment variables turn
it on (a `vara run` posts nothing to a LangSmith endpoint; with the variables set it does)."""

from __future__ import annotations

import importlib.util
import inspect
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from langgraph.graph.state import CompiledStateGraph

from vara.agents.registry import GRAPHS
from vara.cli import main
from vara.testing import build_tiny_clip, write_test_video
from vara.types import Clip

ROOT = Path(__file__).resolve().parents[1]
CONFIG = json.loads((ROOT / "langgraph.json").read_text())


def _load(ref: str):
    """``./file.py:attr`` as langgraph-api loads it: the file as a module of its own."""
    path, _, attr = ref.rpartition(":")
    spec = importlib.util.spec_from_file_location("studio_under_test", ROOT / path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return getattr(module, attr)


def test_every_registered_graph_is_listed():
    assert sorted(CONFIG["graphs"]) == sorted(GRAPHS)
    assert CONFIG["dependencies"] == ["."]


@pytest.mark.parametrize("key", sorted(CONFIG["graphs"]))
def test_each_listed_graph_loads_and_compiles(key):
    factory = _load(CONFIG["graphs"][key])
    assert not inspect.signature(factory).parameters  # a 0-argument factory
    graph = factory()
    assert isinstance(graph, CompiledStateGraph) and graph.name == key
    drawn = graph.get_graph()
    assert {"__start__", "sample", "__end__"} <= set(drawn.nodes)
    assert drawn.draw_mermaid().startswith("---")  # what Studio draws


def _first_step(graph, clip, **kwargs) -> dict:
    """The stream's first update; the stream stops there, so no model is loaded."""
    stream = graph.stream({"clip": clip}, stream_mode="updates", **kwargs)
    first = next(stream)
    stream.close()
    return first


def test_the_default_context_runs_a_graph_without_context_or_with_json(tmp_path, monkeypatch):
    """The direct graph's first step (sample: plan the window's frames) runs on a real video
    with the bound default context, and with a JSON context and clip as Studio sends them."""
    monkeypatch.delenv("VARA_STUDIO_SET", raising=False)
    video = write_test_video(tmp_path / "v.mp4", n_frames=50, fps=25.0)
    graph = _load(CONFIG["graphs"]["direct"])()
    clip = Clip("v:0.00-2.00", str(video), 0.0, 2.0)
    first = _first_step(graph, clip)
    n = graph.config["configurable"]["__pregel_runtime"].context.strategy.sampler.n_frames
    assert list(first) == ["sample"] and len(first["sample"]["frame_idx"]) == n
    assert all(0.0 <= t < 2.0 for t in first["sample"]["timestamps_s"])
    # As the HTTP API sends them: the context a JSON object (here overriding the frame
    # count), the clip its fields; the sampled window is the same, with 3 frames.
    first = _first_step(graph, clip.to_dict(), context={"set": ["sampler.n_frames=3"]})
    assert len(first["sample"]["frame_idx"]) == 3 and first["sample"]["clip"] == clip
    # A graph whose default strategy needs a setting it lacks is still drawn, unbound; a
    # run's context supplies the setting.
    classifier = _load(CONFIG["graphs"]["classifier"])()
    assert classifier.config is None
    with pytest.raises(Exception, match="scorer.run_dir"):
        _first_step(classifier, clip, context={})


class _Recorder(BaseHTTPRequestHandler):
    requests: list[str] = []

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        self.rfile.read(length)
        type(self).requests.append(f"{self.command} {self.path}")
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    do_GET = do_POST = do_PATCH = _answer

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def langsmith_endpoint():
    """A local HTTP server standing in for LangSmith; ``.requests`` lists what reached it."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    _Recorder.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Recorder
    server.shutdown()
    server.server_close()


_TRACING_VARS = (
    "LANGSMITH_TRACING",
    "LANGSMITH_TRACING_V2",
    "LANGCHAIN_TRACING_V2",
    "LANGCHAIN_TRACING",
    "LANGSMITH_API_KEY",
    "LANGCHAIN_API_KEY",
    "LANGSMITH_ENDPOINT",
    "LANGCHAIN_ENDPOINT",
)


def _run(tmp_path: Path, name: str, model: Path, video: Path) -> None:
    from langchain_core.tracers.langchain import wait_for_all_tracers
    from langsmith import utils

    utils.get_env_var.cache_clear()  # langsmith caches what it read of the environment
    out = tmp_path / name
    args = ["run", str(video), "--labels", "kinetics-sample", "--strategy", "clip"]
    args += ["--set", f"scorer.model={model}", "--frames", "2", "--max-side", "64"]
    assert main([*args, "--out", str(out), "--no-progress", "--no-cache"]) == 0
    wait_for_all_tracers()  # what a tracer queued has been sent


def test_tracing_is_off_by_default_and_on_with_the_langsmith_variables(
    tmp_path, monkeypatch, langsmith_endpoint
):
    from langsmith import utils

    url, recorder = langsmith_endpoint
    for var in _TRACING_VARS:
        monkeypatch.delenv(var, raising=False)
    model = build_tiny_clip(tmp_path / "clip")
    video = write_test_video(tmp_path / "v.mp4", n_frames=75, fps=25.0)
    monkeypatch.setenv("LANGSMITH_ENDPOINT", url)  # where traces would go, were they on
    _run(tmp_path, "off", model, video)
    assert not utils.tracing_is_enabled()
    assert recorder.requests == []
    import os

    assert not any(var in os.environ for var in _TRACING_VARS if var != "LANGSMITH_ENDPOINT")
    # The control: the documented variables turn it on, and the same run posts its traces.
    monkeypatch.setenv("LANGSMITH_TRACING", "true")
    monkeypatch.setenv("LANGSMITH_API_KEY", "test-key")
    try:
        _run(tmp_path, "on", model, video)
        assert utils.tracing_is_enabled()
        assert any(r.startswith("POST /runs") for r in recorder.requests), recorder.requests
    finally:  # later tests in this process must not trace (langsmith cached the variables)
        monkeypatch.delenv("LANGSMITH_TRACING")
        utils.get_env_var.cache_clear()
    assert not utils.tracing_is_enabled()


@pytest.mark.server
def test_a_server_url_alone_uses_the_servers_model_as_vlm_url_does(vllm_server, monkeypatch):
    from vara.agents.studio import default_context

    monkeypatch.setenv("VARA_STUDIO_SET", f"vlm.url={vllm_server.url}")
    ctx = default_context("direct")
    assert ctx.vlm.model_id == "tiny-vlm"  # not the packaged strategy's hub id
    named = default_context("direct", [f"vlm.url={vllm_server.url}", "vlm.model=other"])
    assert named.strategy.vlm.model == "other"
