"""The prompt-editing loop: re-evaluating after editing only the reasoning prompt.

Starts a vLLM CPU server with the tiny VLM and evaluates caption-reason on a synthetic
interval manifest twice, sharing one caption cache:
  1. first run:  every window is captioned (VLM, with frames) and answered (LLM);
  2. second run: reason.v2 (reason.v1 with one sentence changed, via --prompts-dir); the
     captions all come from the cache, so only the answers are recomputed.
  3. floor:      the second run's answer requests, rebuilt from its predictions (same
     captions and schema) with reason.v3 (one other word, so the server's prefix cache
     helps it no more than it helped the second run), sent by a bare asyncio client at the
     same concurrency: what the server alone needs for the answers.
Reports both wall times, the ratio second/first (target <= 0.10), the caption requests of
the second run (must be 0) and its windows that were not decoded, the server's generated
tokens of each run, the floor ratio floor/first (what the model's answer lengths allow) and
second/floor (vara's own cost in the loop). Run for the default (one caption per window),
for per-frame captions of 4 frames (frames_per_caption=1), and for the study's small-VLM
design: per-frame captions at 8 fps, 16 frames per 2-s window (the tiny model is built
with a 4096-token context for it: 16 captions do not fit 2048).

    OMP_NUM_THREADS=1 .venv/bin/python bench/prompt_edit_loop.py --out /tmp/prompt_edit.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import tempfile
import time
from pathlib import Path

import httpx
from _common import bare, synthetic_dataset, tiny_server_options

from vara.agents.strategies import load_strategy
from vara.eval.runner import evaluate
from vara.prompts.loader import load_labelset, load_prompt
from vara.records import read_jsonl
from vara.tools.cache import CaptionCache
from vara.tools.chat import Message
from vara.tools.reason import answer_schema, caption_items, caption_ref
from vara.tools.vllm_server import VLLMServer
from vara.tools.vlm import chat_body
from vara.types import Caption

PROMPTS = Path(__file__).resolve().parents[1] / "prompts"


def generated_tokens(url: str) -> float:
    text = httpx.get(url.removesuffix("/v1") + "/metrics", timeout=10).text
    found = re.findall(r"^vllm:generation_tokens_total\{.*\} (\S+)$", text, re.M)
    return sum(float(v) for v in found)


def timed_eval(dataset, labelset, strategy, out, cache, url, prompts_dir=None) -> dict:
    tokens0, t0 = generated_tokens(url), time.perf_counter()
    (path,) = evaluate(
        dataset, labelset, [strategy], out, prompts_dir=prompts_dir, cache=cache, progress=False
    )
    wall = time.perf_counter() - t0
    counts = json.loads(path.read_text())["run_info"]["counts"]
    preds = read_jsonl(path.with_name("predictions.jsonl"))
    if counts["n_failures"]:
        raise SystemExit(f"{counts['n_failures']} windows failed in {out}: see failures.jsonl")
    return {
        "wall_s": round(wall, 2),
        "caption_requests": counts["caption_requests"],
        "caption_cache_hits": counts["caption_cache_hits"],
        "windows_not_decoded": counts["windows_not_decoded"],
        "answer_requests": sum(p["attempts"] for p in preds),
        "generated_tokens": int(generated_tokens(url) - tokens0),
    }


def answer_bodies(run_dir, labelset, strategy, prompt, model: str) -> list[dict]:
    """The first answer request of each window of a caption-reason run, with ``prompt``."""
    bodies = []
    for pred in read_jsonl(run_dir / "predictions.jsonl"):
        captions = [Caption.from_dict(c) for c in pred["captions"]]
        r = prompt.render(
            labelset=labelset,
            captions=caption_items(captions),
            start_s=pred["start_s"],
            end_s=pred["end_s"],
        )
        refs = [caption_ref(i) for i in range(1, len(captions) + 1)]
        schema = answer_schema(prompt.schema, labelset, refs)
        turns = [Message("system", r.system), Message("user", r.user)]
        bodies.append(
            chat_body(
                model,
                turns,
                json_schema=schema,
                max_tokens=strategy.generation.answer_max_tokens,
                temperature=strategy.generation.temperature,
            )
        )
    return bodies


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="synthetic video length")
    ap.add_argument("--frames", type=int, default=8, help="frames per window")
    ap.add_argument("--out", type=Path, help="write the results JSON here")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vara-prompt-edit-"))
    labelset = load_labelset("kinetics-sample")
    dataset = synthetic_dataset(work, args.seconds, labelset)
    edited = work / "prompts"
    edited.mkdir()
    v1 = (PROMPTS / "reason.v1.yaml").read_text()
    (edited / "reason.v2.yaml").write_text(v1.replace("You are a careful", "You are a meticulous"))
    (edited / "reason.v3.yaml").write_text(v1.replace("You are a careful", "You are a diligent"))
    opts = tiny_server_options(work, text_tokens=4096)
    results = {}
    with VLLMServer(opts, log_path=work / "server.log") as server:
        # Per-frame captions of a random model run to 128 tokens each: 16 of them need the
        # 4096-token context the bench's tiny model has.
        variants = (
            ("one caption per window", None, args.frames),
            ("per-frame captions", 1, 4),
            ("per-frame captions at 8 fps", 1, 16),
        )
        for k, (name, per_caption, frames) in enumerate(variants):
            base = [
                f"vlm.url={server.url}",
                "vlm.model=tiny",
                f"sampler.n_frames={frames}",
                f"frames_per_caption={'null' if per_caption is None else per_caption}",
                "concurrency=8",
                # the random model cannot quote: mark its quotes, do not re-ask (same requests
                # as the runs measured before evidence was checked)
                "evidence.check=mark",
            ]
            cache = CaptionCache(work / f"cache-{k}.sqlite")
            first = timed_eval(
                dataset,
                labelset,
                load_strategy("caption-reason", base),
                work / f"first-{k}",
                cache,
                server.url,
            )
            edited_strategy = load_strategy("caption-reason", [*base, "prompts.answer=reason.v2"])
            second = timed_eval(
                dataset,
                labelset,
                edited_strategy,
                work / f"second-{k}",
                cache,
                server.url,
                prompts_dir=str(edited),
            )
            v3 = load_prompt("reason.v3", str(edited))
            bodies = answer_bodies(
                work / f"second-{k}" / "caption-reason", labelset, edited_strategy, v3, "tiny"
            )
            floor_s = asyncio.run(bare(server.url, bodies, edited_strategy.concurrency))
            ratio = second["wall_s"] / first["wall_s"]
            results[name] = {
                "first": first,
                "second": second,
                "ratio": round(ratio, 3),
                "floor": {"wall_s": round(floor_s, 2), "requests": len(bodies)},
                "floor_ratio": round(floor_s / first["wall_s"], 3),
                "second_over_floor": round(second["wall_s"] / floor_s, 3),
            }
            print(json.dumps({name: results[name]}), flush=True)
    if args.out:
        args.out.write_text(
            json.dumps({"results": results, "args": vars(args)}, indent=2, default=str)
        )


if __name__ == "__main__":
    main()
