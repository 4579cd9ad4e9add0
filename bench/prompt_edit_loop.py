"""The prompt-editing loop: re-evaluating after editing only the reasoning prompt.

Starts a vLLM CPU server with the tiny VLM and evaluates caption-reason on a synthetic
interval manifest twice, sharing one caption cache:
  1. first run:  every window is captioned (VLM, with frames) and answered (LLM);
  2. second run: reason.v2 (reason.v1 with one sentence changed, via --prompts-dir); the
     captions all come from the cache, so only the answers are recomputed.
Reports both wall times, the ratio second/first (target <= 0.10), the caption requests of
the second run (must be 0), and the server's generated-token counts of each run, which set
the ratio: it is roughly answer tokens / (caption tokens + answer tokens). Run for the
default (one caption per window) and for per-frame captions (frames_per_caption=1).

    OMP_NUM_THREADS=1 .venv/bin/python bench/prompt_edit_loop.py --out /tmp/prompt_edit.json
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
from pathlib import Path

import httpx
from _common import synthetic_dataset, tiny_server_options

from vara.agents.strategies import load_strategy
from vara.eval.runner import evaluate
from vara.prompts.loader import load_labelset
from vara.tools.cache import CaptionCache
from vara.tools.vllm_server import VLLMServer

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
    if counts["n_failures"]:
        raise SystemExit(f"{counts['n_failures']} windows failed in {out}: see failures.jsonl")
    return {
        "wall_s": round(wall, 2),
        "caption_requests": counts["caption_requests"],
        "caption_cache_hits": counts["caption_cache_hits"],
        "generated_tokens": int(generated_tokens(url) - tokens0),
    }


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
    opts = tiny_server_options(work)
    results = {}
    with VLLMServer(opts, log_path=work / "server.log") as server:
        # Per-frame captions of a random model (128 tokens each) fill the tiny model's
        # 2048-token context at 8 frames; 4 keep the reasoning prompt inside it.
        variants = (("one caption per window", None, args.frames), ("per-frame captions", 1, 4))
        for name, per_caption, frames in variants:
            base = [f"vlm.url={server.url}", "vlm.model=tiny", f"sampler.n_frames={frames}",
                    f"frames_per_caption={'null' if per_caption is None else per_caption}",
                    "concurrency=8"]  # fmt: skip
            cache = CaptionCache(work / f"cache-{per_caption}.sqlite")
            first = timed_eval(dataset, labelset, load_strategy("caption-reason", base),
                               work / f"first-{per_caption}", cache, server.url)  # fmt: skip
            edited_strategy = load_strategy("caption-reason", [*base, "prompts.answer=reason.v2"])
            second = timed_eval(dataset, labelset, edited_strategy, work / f"second-{per_caption}",
                                cache, server.url, prompts_dir=str(edited))  # fmt: skip
            ratio = second["wall_s"] / first["wall_s"]
            results[name] = {"first": first, "second": second, "ratio": round(ratio, 3)}
            print(json.dumps({name: results[name]}), flush=True)
    if args.out:
        args.out.write_text(json.dumps({"results": results, "args": vars(args)}, indent=2,
                                       default=str))  # fmt: skip


if __name__ == "__main__":
    main()
