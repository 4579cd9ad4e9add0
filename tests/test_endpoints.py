"""Several replicas per role (tools/endpoints.py): least-outstanding balancing, failover, health
checks, per-endpoint stats in run.json.

The balancing and health-check tests use stand-in servers (vara.testing.faults.StandInServer:
a fixed service time, so which replica answers is decided by the pool, not by a model); the
run tests put two fault proxies in front of the real vLLM server as two replicas, one of them
killed mid-run, and check the fault suite's guarantee: one prediction per window.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path

import pytest

from vara.cli import main
from vara.commands.common import add_model_flags, run_overrides
from vara.config import Endpoint
from vara.errors import ConfigError, EndpointUnreachable
from vara.prompts.loader import load_labelset
from vara.testing.faults import (
    FAST_RUN_FLAGS,
    FaultProxy,
    StandInServer,
    check_one_per_window,
    stop_after_posts,
)
from vara.tools.chat import Message
from vara.tools.endpoints import EndpointPool, connect, merge_endpoint_reports

KINETICS = load_labelset("kinetics-sample")


def _ask(pool: EndpointPool, n: int = 1, threads: int = 1) -> None:
    def worker(k: int) -> None:
        for _ in range(k):
            assert pool.complete([Message("user", "hi")], max_tokens=4).text

    jobs = [threading.Thread(target=worker, args=(n,)) for _ in range(threads)]
    for j in jobs:
        j.start()
    for j in jobs:
        j.join()


def _by_url(pool: EndpointPool) -> dict:
    return {s.url: s for s in pool.stats()}


def test_repeated_url_flags_become_a_list_of_replicas_one_stays_a_string():
    parser = argparse.ArgumentParser()
    add_model_flags(parser)
    two = parser.parse_args(["--vlm-url", "http://a:1/v1", "--vlm-url", "http://b:1/v1"])
    assert 'vlm.url=["http://a:1/v1", "http://b:1/v1"]' in run_overrides(two)
    one = parser.parse_args(["--llm-url", "http://a:1/v1"])
    assert "llm.url=http://a:1/v1" in run_overrides(one)
    endpoint = Endpoint(model="m", url=["http://a:1/v1", "http://b:1/v1"])  # as YAML gives it
    assert endpoint.urls == ("http://a:1/v1", "http://b:1/v1") and hash(endpoint)
    assert connect(endpoint).urls == endpoint.urls  # a model name: nothing is asked yet


def test_an_endpoints_file_names_each_roles_replicas_and_flags_win_over_it(tmp_path):
    from vara.agents.strategies import load_strategy

    parser = argparse.ArgumentParser()
    add_model_flags(parser)
    path = tmp_path / "endpoints.yaml"
    path.write_text(
        "vlm: [http://a:1/v1, http://b:1/v1]\nllm: {url: http://c:1/v1, model: reasoner}\n"
    )
    given = parser.parse_args(["--endpoints", str(path)])
    s = load_strategy("caption-reason", run_overrides(given))
    assert s.vlm.urls == ("http://a:1/v1", "http://b:1/v1") and s.vlm.model is None
    assert s.llm.urls == ("http://c:1/v1",) and s.llm.model == "reasoner"
    flags = parser.parse_args(["--endpoints", str(path), "--vlm-url", "http://d:1/v1"])
    assert load_strategy("caption-reason", run_overrides(flags)).vlm.urls == ("http://d:1/v1",)
    for bad, says in [
        ("vlm: 3\n", "`vlm` must be a URL, a list of URLs"),
        ("gpu: [http://a:1/v1]\n", "expected `vlm:` and/or `llm:`"),
        ("vlm: {url: [], model: m}\n", "`vlm` must be"),
    ]:
        path.write_text(bad)
        with pytest.raises(ConfigError, match=str(path)) as err:
            run_overrides(parser.parse_args(["--endpoints", str(path)]))
        assert says in str(err.value)
    with pytest.raises(ConfigError, match="cannot be read"):
        run_overrides(parser.parse_args(["--endpoints", str(tmp_path / "missing.yaml")]))
    path.write_text("vlm: {urls: [http://a:1/v1]}\n")  # a misspelt key is named
    with pytest.raises(ConfigError, match=r"`vlm` must be .* \(unknown: urls\)"):
        run_overrides(parser.parse_args(["--endpoints", str(path)]))
    # What `vara serve --replicas N --url-file F` writes: one URL a line, the VLM's replicas.
    path.write_text("http://a:1/v1\nhttp://b:1/v1\n")
    s = load_strategy(
        "caption-reason", run_overrides(parser.parse_args(["--endpoints", str(path)]))
    )
    assert s.vlm.urls == ("http://a:1/v1", "http://b:1/v1") and s.vlm.model is None


def test_workers_replica_stats_merge_per_url():
    def row(url, requests, errors, mean, p95, up=True, out=0):
        return {
            "url": url,
            "in_rotation": up,
            "requests": requests,
            "errors": errors,
            "taken_out": out,
            "mean_latency_s": mean,
            "p95_latency_s": p95,
        }

    a = {"vlm": [row("u1", 10, 2, 1.0, 2.0), row("u2", 4, 4, None, None, up=False, out=1)]}
    b = {"vlm": [row("u1", 2, 0, 4.0, 5.0)], "llm": [row("u3", 1, 0, 0.5, 0.5)]}
    merged = merge_endpoint_reports([a, b])
    assert merged["vlm"] == [
        row("u1", 12, 2, round((8 * 1.0 + 2 * 4.0) / 10, 4), 5.0),  # 8 + 2 answered
        row("u2", 4, 4, None, None, up=False, out=1),
    ]
    assert merged["llm"] == b["llm"] and merge_endpoint_reports([]) == {}


def test_the_least_busy_replica_gets_the_request():
    """A slow replica keeps requests in flight longer, so it is picked less (round robin
    would split 20 requests 10/10)."""
    with StandInServer(service_s=0.4) as slow, StandInServer(service_s=0.01) as fast:
        pool = EndpointPool([slow.url, fast.url], "stand-in")
        _ask(pool, n=5, threads=4)
        stats = _by_url(pool)
    assert stats[slow.url].requests + stats[fast.url].requests == 20
    assert stats[fast.url].requests >= 14, stats
    assert stats[fast.url].mean_latency_s < stats[slow.url].mean_latency_s


def test_concurrent_requests_spread_evenly_over_idle_replicas():
    servers = [StandInServer(service_s=0.3, capacity=8).start() for _ in range(3)]
    try:
        pool = EndpointPool([s.url for s in servers], "stand-in")
        _ask(pool, n=1, threads=9)  # all in flight at once: 3 each
        assert sorted(s.requests for s in pool.stats()) == [3, 3, 3]
    finally:
        for s in servers:
            s.stop()


def test_a_dead_replica_is_taken_out_and_put_back_by_the_health_check():
    with StandInServer(service_s=0.01) as a, StandInServer(service_s=0.01) as b:
        pool = EndpointPool([a.url, b.url], "stand-in", health_interval_s=0.1)
        a.stop()
        _ask(pool, n=6)  # each answered: the try on `a` moves to `b`
        stats = _by_url(pool)
        assert not stats[a.url].in_rotation and stats[a.url].taken_out == 1
        assert stats[a.url].errors == stats[a.url].requests == 1
        assert stats[b.url].requests == 6 and stats[b.url].errors == 0
        a.start()  # restarted on the same port
        deadline = time.monotonic() + 10
        while not _by_url(pool)[a.url].in_rotation and time.monotonic() < deadline:
            time.sleep(0.05)
        _ask(pool, n=4)
        assert _by_url(pool)[a.url].requests >= 2  # back in rotation, sharing the work
        pool.close()


def test_every_replica_down_stops_the_run_naming_every_url():
    urls = ["http://127.0.0.1:9/v1", "http://127.0.0.1:7/v1"]  # discard, echo: nothing listens
    pool = EndpointPool(urls, "m", max_retries=2, backoff_s=0.01)
    with pytest.raises(EndpointUnreachable) as info:
        pool.complete([Message("user", "hi")])
    assert all(u in str(info.value) for u in urls) and "\n" not in str(info.value)
    with pytest.raises(EndpointUnreachable, match="cannot reach a model server at http"):
        EndpointPool(urls[:1], max_retries=1, backoff_s=0.01)  # discovery asks the server


def _run(urls: list[str], video: Path, out: Path, *extra: str) -> tuple[int, dict]:
    args = ["run", str(video), "--labels", "kinetics-sample", *FAST_RUN_FLAGS]
    for url in urls:
        args += ["--vlm-url", url]
    code = main([*args, *extra, "--out", str(out)])
    return code, json.loads((out / "run.json").read_text())["run_info"]


@pytest.mark.server
def test_a_run_over_two_replicas_spreads_its_requests(vllm_server, tmp_path):
    from vara.testing import write_test_video

    video = write_test_video(tmp_path / "v.mp4", n_frames=200, fps=25.0, codec="h264")
    with FaultProxy(vllm_server.url) as a, FaultProxy(vllm_server.url) as b:
        code, run = _run([a.url, b.url], video, tmp_path / "out", "--concurrency", "4")
        posts = {a.url: a.counts_posts(), b.url: b.counts_posts()}
    assert code == 0 and run["n_failures"] == 0
    check_one_per_window(tmp_path / "out", run["n_windows"], KINETICS)
    recorded = {e["url"]: e for e in run["endpoints"]["vlm"]}
    assert {u: e["requests"] for u, e in recorded.items()} == posts
    assert min(posts.values()) >= 0.3 * sum(posts.values()), posts  # roughly balanced
    assert all(e["errors"] == 0 and e["p95_latency_s"] > 0 for e in recorded.values())
    assert run["sessions"][-1]["endpoints"] == run["endpoints"]


@pytest.mark.server
def test_a_replica_killed_mid_run_the_run_completes_on_the_other(vllm_server, tmp_path):
    from vara.testing import write_test_video

    video = write_test_video(tmp_path / "v.mp4", n_frames=300, fps=25.0, codec="h264")
    with FaultProxy(vllm_server.url) as a, FaultProxy(vllm_server.url) as b:
        killer = stop_after_posts(a, 4)
        code, run = _run([a.url, b.url], video, tmp_path / "out", "--concurrency", "4")
        killer.join()
        posts_b = b.counts_posts()
    assert code == 0 and run["n_failures"] == 0 and run["status"] == "complete"
    check_one_per_window(tmp_path / "out", run["n_windows"], KINETICS)
    recorded = {e["url"]: e for e in run["endpoints"]["vlm"]}
    assert recorded[a.url]["taken_out"] >= 1 and not recorded[a.url]["in_rotation"]
    assert recorded[b.url]["requests"] == posts_b >= 2 * run["n_windows"] - 4
    print(f"killed replica: {recorded[a.url]}; survivor: {recorded[b.url]}")


@pytest.mark.server
def test_a_restarted_replica_is_back_in_rotation_after_a_health_check(vllm_server):
    with FaultProxy(vllm_server.url) as a, FaultProxy(vllm_server.url) as b:
        pool = EndpointPool([a.url, b.url], health_interval_s=0.2)  # the model is discovered
        a.stop()
        _ask(pool, n=3)
        assert not _by_url(pool)[a.url].in_rotation and b.counts_posts() == 3
        a.start()
        deadline = time.monotonic() + 30
        while not _by_url(pool)[a.url].in_rotation and time.monotonic() < deadline:
            time.sleep(0.05)
        _ask(pool, n=2, threads=2)
        assert a.counts_posts() >= 1 and pool.model_id == vllm_server.model_name
        pool.close()


def test_an_adapter_is_in_process_only_and_reaches_the_engine(tmp_path):
    from vara.errors import ConfigError, InputError
    from vara.tools.endpoints import connect

    with pytest.raises(ConfigError, match="applied in-process only"):
        connect(Endpoint(model="m", url="http://127.0.0.1:9/v1", adapter=str(tmp_path)))
    with pytest.raises(InputError, match="adapter"):  # not an adapter directory: named
        connect(Endpoint(model=str(tmp_path), adapter=str(tmp_path / "nope")))
