"""Benchmark: the review page of a 2-hour video, 3,600 windows, two strategies.

Run:
    OMP_NUM_THREADS=1 .venv/bin/python bench/review_page.py --out /tmp/review_page.json
Quick sanity run (10 minutes of video):
    OMP_NUM_THREADS=1 .venv/bin/python bench/review_page.py --minutes 10

Workload: a real H.264 video of ``--minutes`` (120) at 2 fps and 96x72 px (made with
``vara.testing.write_test_video``: quick to write and decode, and the page does not care how
big the pixels were), and two run dirs laid out as ``vara run`` writes them (run.json with the
real strategy configs of caption-reason and direct, 2-s windows without overlap, 4 frames a
window; predictions.jsonl of real ``Prediction`` records with captions, evidence, scores and
explanations; a few failed windows; timeline.json). Labels change every ~30 s and the two
strategies disagree on about one window in five.

Reported: the seconds ``build_review`` takes, the page folder's size on disk and file count,
and in headless Chromium (``vara.testing.browser.Page``): time to first render (the page's own
``performance.now()`` when its first canvas draw is done, from navigation start) and the time
for a click on a lane to show its card (mouse press -> card built -> next frame painted),
median and max over ``--clicks`` clicks spread over the video. Targets: first render < 2 s,
click < 200 ms.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

from vara.agents.strategies import load_strategy
from vara.eval.review import build_review
from vara.prompts.loader import load_labelset
from vara.records import write_json_atomic, write_jsonl_atomic
from vara.testing import write_test_video
from vara.testing.browser import Page
from vara.timeline import run_timeline
from vara.tools.pixels import pixel_spec
from vara.tools.video import probe
from vara.tools.windows import make_windows
from vara.types import Caption, ClassScores, Evidence, Failure, Prediction, PromptRef

LABELS = load_labelset("newborn-resuscitation")
WORDS = "a gloved hand holds a round mask over the face while the other squeezes a bag".split()
SEGMENT_S = 30.0


def _truth_at(t: float, rng: random.Random) -> tuple[str, ...]:
    names = LABELS.names
    k = int(t // SEGMENT_S)
    return (names[k % len(names)],) if k % 4 else ()


def _prediction(clip, strategy: str, rng: random.Random) -> Prediction:
    labels = _truth_at(clip.start_s, rng)
    if rng.random() < 0.2:  # where strategies disagree
        labels = (rng.choice(LABELS.names),)
    probs = tuple(round(0.9 if n in labels else rng.random() * 0.4, 3) for n in LABELS.names)
    caption_text = " ".join(rng.choice(WORDS) for _ in range(40))
    caps = tuple(
        Caption(
            clip.clip_id,
            caption_text,
            (i,),
            (clip.start_s + i * 0.5,),
            "vlm",
            "caption",
            "0" * 64,
            0.4,
        )
        for i in range(2)
    )
    mid = (clip.start_s + clip.end_s) / 2
    return Prediction(
        clip_id=clip.clip_id,
        video=clip.video,
        start_s=clip.start_s,
        end_s=clip.end_s,
        labels=labels,
        evidence=(
            Evidence("caption", "caption:1", " ".join(WORDS[:6]), True),
            Evidence("frame", f"t={mid:.2f}s", "mask on the face", None),
        ),
        explanation=f"The mask is held over the face ({strategy}); " + caption_text[:120],
        strategy=strategy,
        prompts=(PromptRef("reason", 1, "0" * 64),),
        models={"vlm": "tiny-vlm", "llm": "tiny-vlm"},
        raw=json.dumps({"labels": list(labels), "explanation": "..."}),
        scores=ClassScores(LABELS.names, probs, tuple(0.5 for _ in probs)),
        captions=caps,
    )


def write_run(out: Path, strategy: str, video: str, seed: int) -> int:
    """A run dir as `vara run` leaves it; the number of windows."""
    config = load_strategy(
        strategy, ["windows.window_s=2", "windows.overlap=0", "sampler.n_frames=4"]
    )
    info = probe(video)
    clips = make_windows(info, 2.0, 0.0)
    rng = random.Random(seed)
    failed = set(rng.sample(range(len(clips)), 12))
    preds = [_prediction(c, strategy, rng) for k, c in enumerate(clips) if k not in failed]
    fails = [Failure(clips[k].clip_id, "answer", "no valid JSON after one re-ask") for k in failed]
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl_atomic(out / "predictions.jsonl", (p.to_dict() for p in preds))
    write_jsonl_atomic(out / "failures.jsonl", (f.to_dict() for f in fails))
    by_id = {p.clip_id: p for p in preds}
    tl = run_timeline(video, info.duration_s, [c.clip_id for c in clips], by_id)
    write_json_atomic(out / "timeline.json", {"timelines": [tl.to_dict()]})
    pixels = pixel_spec(config.sampler.max_side).canonical
    fingerprint = {"labelset": LABELS.to_dict(), "pixels": pixels}
    run_info = {"fingerprint": fingerprint, "config": config.to_dict(), "status": "complete"}
    write_json_atomic(out / "run.json", {"run_info": run_info})
    return len(clips)


def _size(folder: Path) -> tuple[int, int]:
    files = [p for p in folder.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files), len(files)


def _click_ms(page: Page, t: float, label: str) -> float:
    """Mouse press on the first run's lane at ``t`` -> card built and the next frame painted."""
    x, y = page.evaluate(f"review.xy('run', {json.dumps(label)}, {t}, 0)")
    page.evaluate(
        "window.__t0 = null; window.addEventListener('mousedown', () => "
        "{ window.__t0 = performance.now(); }, {capture: true, once: true}); 0"
    )
    for kind in ("mousePressed", "mouseReleased"):
        page.call(
            "Input.dispatchMouseEvent",
            {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1},
        )
    got = page.call(
        "Runtime.evaluate",
        {
            "expression": "new Promise(r => requestAnimationFrame(() => setTimeout(() => "
            "r([performance.now() - window.__t0, document.querySelector('#card h3') && "
            "document.querySelector('#card h3').textContent]), 0)))",
            "awaitPromise": True,
            "returnByValue": True,
        },
    )
    ms, title = got["result"]["value"]
    assert title, "no card opened"
    return ms


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=120.0, help="video length")
    ap.add_argument("--clicks", type=int, default=9, help="clicks timed (median reported)")
    ap.add_argument("--work", help="folder to build in (default: a temporary one)")
    ap.add_argument("--out", help="write the figures as JSON here too")
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="review-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    fps = 2.0
    t = time.perf_counter()
    video = write_test_video(
        work / "two_hours.mp4",
        n_frames=int(args.minutes * 60 * fps),
        fps=fps,
        size=(96, 72),
        codec="h264",
        gop=50,
        bframes=0,
    )
    video_s = time.perf_counter() - t
    n = [
        write_run(work / s, s, str(video), seed)
        for seed, s in enumerate(("caption-reason", "direct"))
    ]
    t = time.perf_counter()
    summary = build_review(
        [work / "caption-reason", work / "direct"], work / "review", progress=False
    )
    build_s = time.perf_counter() - t
    size, n_files = _size(work / "review")
    html_size = (work / "review" / "index.html").stat().st_size
    with Page(work / "review" / "index.html", work / "profile", width=1400) as page:
        ready_ms = page.evaluate("review.ready")
        load_ms = page.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd")
        label = page.evaluate(
            "JSON.parse(document.getElementById('review-data').textContent)"
            ".videos[0].runs[0].events[0][0]"
        )
        label = LABELS.names[label]
        duration = args.minutes * 60
        times = [duration * (k + 0.5) / args.clicks for k in range(args.clicks)]
        clicks = [_click_ms(page, t, label) for t in times]
    figures = {
        "video_minutes": args.minutes,
        "windows_per_run": n,
        "video_write_s": round(video_s, 1),
        "build_review_s": round(build_s, 1),
        "strips": summary.n_strips,
        "page_bytes": size,
        "page_files": n_files,
        "index_html_bytes": html_size,
        "first_render_ms": round(ready_ms, 1),
        "load_event_ms": round(load_ms, 1),
        "click_to_card_ms_median": round(statistics.median(clicks), 1),
        "click_to_card_ms_max": round(max(clicks), 1),
        "clicks_ms": [round(c, 1) for c in clicks],
    }
    print(json.dumps(figures, indent=2))
    print(
        f"first render {ready_ms / 1000:.2f} s (target < 2 s), click -> card median "
        f"{figures['click_to_card_ms_median']:.0f} ms (target < 200 ms), page "
        f"{size / 2**20:.1f} MiB in {n_files} files"
    )
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
