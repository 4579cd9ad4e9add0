"""vara eval's request throughput vs a bare asyncio client, same requests, same server.

Starts a vLLM CPU server with the tiny VLM, writes a synthetic H.264 video and an interval
manifest, then in ONE run (alternating, --repeat times):
  * vara:  `vara eval` with the direct strategy (one structured request per window, with
           its frames): requests / wall time, everything included (decode, JPEG, LangGraph,
           validation, writing predictions);
  * bare:  an httpx.AsyncClient with an asyncio.Semaphore of the same concurrency sending
           the very same request bodies, pre-built (frames decoded and JPEG-encoded before
           the clock starts), i.e. what the server alone can do.
  * bare-live: the same client, but a producer thread decodes the frames and builds the
           bodies while requests are in flight, as vara has to: vara/bare-live isolates
           vara's own orchestration from the cost of reading video.
Reports requests/s of each and the ratios vara/bare (target >= 0.95) and vara/bare-live.
On a CPU server sharing the client's cores, decoding competes with inference.

    OMP_NUM_THREADS=1 .venv/bin/python bench/eval_overhead.py --out /tmp/eval_overhead.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

import httpx
from _common import bare, synthetic_dataset, tiny_server_options

from vara.agents.strategies import load_strategy
from vara.eval.runner import evaluate
from vara.prompts.loader import load_labelset, load_prompt
from vara.records import read_jsonl
from vara.tools.chat import Message
from vara.tools.frame_batches import iter_frame_batches
from vara.tools.reason import answer_schema, time_ref
from vara.tools.vllm_server import VLLMServer
from vara.tools.vlm import chat_body


def iter_bodies(dataset, labelset, strategy, model: str):
    """The chat-completion bodies vara's direct strategy sends, one per window."""
    prompt = load_prompt(strategy.prompts["answer"])
    for batch in iter_frame_batches(dataset.clips[0].video, dataset.clips, strategy.sampler):
        clip = batch.clip
        r = prompt.render(
            labelset=labelset,
            n_frames=len(batch.frame_idx),
            start_s=clip.start_s,
            end_s=clip.end_s,
            timestamps=list(batch.timestamps_s),
        )
        schema = answer_schema(prompt.schema, labelset, [time_ref(t) for t in batch.timestamps_s])
        msgs = [Message("system", r.system), Message("user", r.user, tuple(batch.frames))]
        yield chat_body(
            model,
            msgs,
            json_schema=schema,
            max_tokens=strategy.generation.answer_max_tokens,
            temperature=strategy.generation.temperature,
        )


async def bare_live(url: str, make_bodies, concurrency: int) -> float:
    """Like ``bare`` but decoding frames and building bodies while sending, as vara must."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue(maxsize=2 * concurrency)

    def produce() -> None:
        for body in make_bodies():
            asyncio.run_coroutine_threadsafe(queue.put(body), loop).result()
        for _ in range(concurrency):
            asyncio.run_coroutine_threadsafe(queue.put(None), loop).result()

    async with httpx.AsyncClient(base_url=url, timeout=600) as client:

        async def sender() -> None:
            while (body := await queue.get()) is not None:
                (await client.post("/chat/completions", json=body)).raise_for_status()

        start = time.perf_counter()
        producer = loop.run_in_executor(None, produce)
        await asyncio.gather(producer, *(sender() for _ in range(concurrency)))
        return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=120.0, help="synthetic video length")
    ap.add_argument("--concurrency", type=int, default=8, help="requests in flight (both)")
    ap.add_argument("--frames", type=int, default=4, help="frames per window")
    ap.add_argument("--repeat", type=int, default=3, help="alternating runs of each")
    ap.add_argument("--out", type=Path, help="write the results JSON here")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vara-overhead-"))
    labelset = load_labelset("kinetics-sample")
    dataset = synthetic_dataset(work, args.seconds, labelset)
    opts = tiny_server_options(work)
    rows = []
    with VLLMServer(opts, log_path=work / "server.log") as server:
        overrides = [
            f"vlm.url={server.url}",
            "vlm.model=tiny",
            f"sampler.n_frames={args.frames}",
            f"concurrency={args.concurrency}",
        ]
        strategy = load_strategy("direct", overrides)

        def make_bodies():
            return iter_bodies(dataset, labelset, strategy, "tiny")

        payloads = list(make_bodies())
        # Untimed: compiles every window's grammar once (each window's refs differ), so
        # neither side pays for it in the timed runs.
        asyncio.run(bare(server.url, payloads, args.concurrency))
        for k in range(args.repeat):
            out = work / f"vara-{k}"
            t0 = time.perf_counter()
            evaluate(dataset, labelset, [strategy], out, progress=False)
            vara_s = time.perf_counter() - t0
            preds = read_jsonl(out / "direct" / "predictions.jsonl")
            sent = sum(p["attempts"] for p in preds)  # re-asks are requests too
            bare_s = asyncio.run(bare(server.url, payloads, args.concurrency))
            live_s = asyncio.run(bare_live(server.url, make_bodies, args.concurrency))
            n = len(payloads)
            row = {
                "vara_req_per_s": sent / vara_s,
                "bare_req_per_s": n / bare_s,
                "bare_live_req_per_s": n / live_s,
                "requests": sent,
            }
            row["ratio"] = row["vara_req_per_s"] / row["bare_req_per_s"]
            row["ratio_live"] = row["vara_req_per_s"] / row["bare_live_req_per_s"]
            print(json.dumps({k: round(v, 3) for k, v in row.items()}), flush=True)
            rows.append(row)
    ratio = statistics.median(r["ratio"] for r in rows)
    live = statistics.median(r["ratio_live"] for r in rows)
    print(
        f"{len(payloads)} requests x {args.repeat}: median vara/bare = {ratio:.3f} "
        f"(pre-built bodies), vara/bare-live = {live:.3f} (bodies built while sending)"
    )
    if args.out:
        summary = {"runs": rows, "median_ratio": ratio, "median_ratio_live": live}
        args.out.write_text(json.dumps({**summary, "args": vars(args)}, indent=2, default=str))


if __name__ == "__main__":
    main()
