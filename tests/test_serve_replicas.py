"""`vara serve --replicas N`: ports, GPU assignment, logs and the printed URLs, without a server.

Starting real vLLM servers costs ~2.4 GB and 30+ s each (tests/test_vllm_server.py starts
one); here the argv and environment each replica would get are checked, and the command's
start / announce / stop-all flow runs against a stand-in for VLLMServer.
"""

from __future__ import annotations

import pytest

from vara.cli import build_parser, main
from vara.commands import serve
from vara.errors import InputError
from vara.tools import vllm_server
from vara.tools.server_options import ServerOptions, replica_options, visible_gpus


def _flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_replicas_take_consecutive_ports_and_one_gpu_each():
    base = ServerOptions.cpu_test_defaults("/models/tiny", port=8000)
    replicas = replica_options(base, 3, ("0", "1", "2", "3"))
    assert [_flag(r.command(), "--port") for r in replicas] == ["8000", "8001", "8002"]
    assert [r.env()["CUDA_VISIBLE_DEVICES"] for r in replicas] == ["0", "1", "2"]
    for r in replicas:  # the CPU recipe's environment is kept beside the GPU choice
        assert r.env()["OMP_NUM_THREADS"] == "1"
        assert (
            r.command()[r.command().index("--port") + 2 :]
            == base.command()[base.command().index("--port") + 2 :]
        )


def test_cpu_replicas_set_no_gpu_and_port_zero_stays_free_for_each():
    replicas = replica_options(ServerOptions(model="m", port=0), 2)
    assert [r.port for r in replicas] == [0, 0]
    assert all("CUDA_VISIBLE_DEVICES" not in r.env() for r in replicas)


def test_more_replicas_than_gpus_fails_naming_the_fix():
    with pytest.raises(ValueError, match="3 replicas but 2 GPU.*--replicas 2 or fewer"):
        replica_options(ServerOptions(model="m", port=8000), 3, ("0", "1"))
    with pytest.raises(ValueError, match="pass 65535: lower --port"):
        replica_options(ServerOptions(model="m", port=65535), 2)
    with pytest.raises(ValueError, match=">= 1"):
        replica_options(ServerOptions(model="m", port=8000), 0)


@pytest.mark.parametrize(
    ("environ", "count", "expected"),
    [
        ({}, 0, ()),
        ({}, 2, ("0", "1")),
        ({"CUDA_VISIBLE_DEVICES": "2,3"}, 8, ("2", "3")),  # the user's choice wins
        ({"CUDA_VISIBLE_DEVICES": "GPU-ab12, GPU-cd34"}, 8, ("GPU-ab12", "GPU-cd34")),
        ({"CUDA_VISIBLE_DEVICES": ""}, 8, ()),
        ({"CUDA_VISIBLE_DEVICES": "-1"}, 8, ()),
    ],
)
def test_visible_gpus(environ, count, expected):
    assert visible_gpus(environ, count) == expected


def _args(*argv: str):
    return build_parser().parse_args(["serve", "/models/tiny", *argv])


def test_replicas_built_from_the_command_line(tmp_path):
    log = str(tmp_path / "vllm.log")
    servers = serve.build_servers(_args("--cpu", "--replicas", "2", "--port", "9000", "--log", log))
    assert [s.url for s in servers] == ["http://127.0.0.1:9000/v1", "http://127.0.0.1:9001/v1"]
    assert [s.log_path.name for s in servers] == ["vllm-0.log", "vllm-1.log"]
    assert all("--enforce-eager" in s.options.command() for s in servers)
    one = serve.build_servers(_args("--log", log))
    assert [s.log_path.name for s in one] == ["vllm.log"]
    assert "CUDA_VISIBLE_DEVICES" not in one[0].options.env()  # one server: as before


def test_too_many_replicas_is_an_input_error(monkeypatch):
    monkeypatch.setattr(serve, "_gpus", lambda args: ("0",))
    with pytest.raises(InputError, match="/models/tiny: 2 replicas but 1 GPU"):
        serve.build_servers(_args("--replicas", "2"))


def test_replicas_must_be_positive(capsys):
    with pytest.raises(SystemExit):
        _args("--replicas", "0")
    assert "'0' is not a whole number >= 1" in capsys.readouterr().err


class StandIn:
    """VLLMServer's surface that `vara serve` uses; Ctrl-C arrives on the first poll."""

    made: list[StandIn] = []

    def __init__(self, options, *, log_path, ready_timeout_s):
        self.options, self.log_path = options, log_path
        self.events: list[str] = []
        StandIn.made.append(self)

    url = property(lambda self: f"http://{self.options.host}:{self.options.port}/v1")
    model_name = property(lambda self: self.options.name)

    def start(self):
        self.events.append("start")

    def wait_ready(self):
        self.events.append("ready")

    def running(self):
        raise KeyboardInterrupt

    def stop(self):
        self.events.append("stop")


def test_serve_prints_every_url_writes_them_and_stops_all(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(vllm_server, "VLLMServer", StandIn)
    monkeypatch.setattr(serve, "_gpus", lambda args: ("0", "1", "2"))
    urls = tmp_path / "urls.txt"
    argv = ["serve", "/models/tiny", "--replicas", "3", "--port", "8100", "--url-file", str(urls)]
    assert main([*argv, "--log", str(tmp_path / "v.log")]) == 0
    expected = [f"http://127.0.0.1:{p}/v1" for p in (8100, 8101, 8102)]
    assert urls.read_text().splitlines() == expected
    out = capsys.readouterr().out
    assert "--vlm-url " + " --vlm-url ".join(expected) in out
    assert f"at {expected[2]} on GPU 2" in out
    servers = StandIn.made[-3:]
    assert [s.events for s in servers] == [["start", "ready", "stop"]] * 3
    gpus = [s.options.env()["CUDA_VISIBLE_DEVICES"] for s in servers]
    assert gpus == ["0", "1", "2"]
