"""`vara review`: the static review page over real `vara run` out dirs (a tiny CLIP, two
strategies, an MP4 and an AVI), driven in real headless Chromium over the DevTools pipe:
clicks seek the video and open cards, model text stays text, corrections export as an
interval manifest that `vara eval` reads."""

from __future__ import annotations

import json
import shutil
import time
import urllib.parse
from pathlib import Path

import pytest

from vara.cli import main
from vara.errors import InputError
from vara.eval.review import _json_for_script, build_review
from vara.eval.review_media import make_proxy
from vara.prompts.loader import load_labelset
from vara.records import read_jsonl, write_jsonl_atomic
from vara.testing import build_tiny_clip, write_test_video
from vara.testing.browser import CHROMIUM, Page
from vara.tools.datasets import load_dataset
from vara.tools.video import probe

KINETICS = load_labelset("kinetics-sample")
WINDOW = "a.mp4:3.00-5.00"  # the window whose record carries the injected model text
FAILED = "a.mp4:6.00-8.00"  # the window the first run failed
HOSTILE = "<script>window.__pwned = 1</script><b>bold?</b>"

needs_chromium = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="no chromium")


def _inject(run_dir: Path) -> dict:
    """Give WINDOW's record captions (one hostile), evidence refs and a marked explanation."""
    rows = read_jsonl(run_dir / "predictions.jsonl")
    for r in rows:
        if r["clip_id"] == WINDOW:
            cap = {"clip_id": WINDOW, "frame_idx": [80], "timestamps_s": [3.2], "model": "m"}
            cap |= {"prompt_id": "caption", "prompt_hash": "0" * 64, "latency_s": 0.1}
            r["captions"] = [{**cap, "text": "a person stands"}, {**cap, "text": HOSTILE}]
            r["explanation"] = "EXPL-MARKER <img src=x onerror=window.__pwned=2>"
            r["evidence"] = [
                {"source": "frame", "ref": "t=4.20s", "text": "arms up", "verified": None},
                {"source": "caption", "ref": "caption:2", "text": "bold?", "verified": True},
            ]
            write_jsonl_atomic(run_dir / "predictions.jsonl", rows)
            return r
    raise AssertionError(f"{WINDOW} not predicted")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """Two real `vara run` dirs (tiny CLIP, mean vs vote pooling) over an MP4 and an AVI, a
    truth manifest, and the review folder built from them by the CLI."""
    root = tmp_path_factory.mktemp("review")
    model = build_tiny_clip(root / "clip")
    write_test_video(root / "a.mp4", n_frames=200, fps=25.0, seed=1)  # 8 s, H.264
    write_test_video(root / "b.avi", n_frames=100, fps=25.0, seed=2)  # 4 s, MJPEG
    videos = [str(root / "a.mp4"), str(root / "b.avi")]
    for name, extra in (("mean", []), ("vote", ["--set", "scorer.pool=vote"])):
        args = ["run", *videos, "--labels", "kinetics-sample", "--strategy", "clip"]
        args += ["--set", f"scorer.model={model}", "--frames", "4", "--no-progress"]
        assert main([*args, "--out", str(root / name), *extra]) == 0
    record = _inject(root / "mean")
    # A window of the first run failed (its prediction gone, a failure recorded instead).
    rows = [r for r in read_jsonl(root / "mean" / "predictions.jsonl") if r["clip_id"] != FAILED]
    write_jsonl_atomic(root / "mean" / "predictions.jsonl", rows)
    failure = {"item": FAILED, "stage": "answer", "error": "no valid JSON", "raw": "<i>raw</i>"}
    write_jsonl_atomic(root / "mean" / "failures.jsonl", [failure])
    # The tiny model says one thing everywhere: make the runs disagree on one window.
    # (A named window: the file's order is the order windows finished in.)
    mean = {r["clip_id"]: r["labels"] for r in read_jsonl(root / "mean" / "predictions.jsonl")}
    votes = read_jsonl(root / "vote" / "predictions.jsonl")
    [vote] = [r for r in votes if r["clip_id"] == "a.mp4:0.00-2.00"]
    vote["labels"] = [next(n for n in ("juggling balls", "yoga") if [n] != mean[vote["clip_id"]])]
    write_jsonl_atomic(root / "vote" / "predictions.jsonl", votes)
    # The truth agrees with the first run's first window and differs elsewhere.
    first = next(r for r in read_jsonl(root / "mean" / "predictions.jsonl") if r["start_s"] == 0)
    other = "yoga" if first["labels"][0] != "yoga" else "tai chi"
    truth = root / "truth.csv"
    truth.write_text(
        f"video,label,start_s,end_s\na.mp4,{first['labels'][0]},0,2\na.mp4,{other},2,8\n"
        "b.avi,swimming,0,4\n"
    )
    out = root / "site"
    argv = ["review", str(root / "mean"), str(root / "vote"), "--truth", str(truth)]
    assert main([*argv, "--out", str(out)]) == 0
    return {"root": root, "out": out, "model": model, "record": record}


def _data(out: Path) -> dict:
    html = (out / "index.html").read_text()
    start = html.index('id="review-data">') + len('id="review-data">')
    return json.loads(html[start : html.index("</script>", start)])


def test_the_folder_is_self_contained_and_proxies_what_a_browser_cannot_play(site, tmp_path):
    out = site["out"]
    for name in ("index.html", "review.js", "review.css"):
        text = (out / name).read_text()
        assert "http://" not in text and "https://" not in text, name  # no CDN, no server
    html = (out / "index.html").read_text()
    assert "<script>window.__pwned" not in html and "<img src=x" not in html
    data = _data(out)
    a, b = data["videos"]
    assert (a["name"], a["proxy"]) == ("a.mp4", False)
    assert (out / urllib.parse.unquote(a["src"])).resolve() == (site["root"] / "a.mp4").resolve()
    assert b["proxy"] and b["src"].startswith("media/")
    original, proxy = probe(site["root"] / "b.avi"), probe(out / urllib.parse.unquote(b["src"]))
    assert proxy.codec.lower() in ("avc1", "h264") and max(proxy.width, proxy.height) <= 480
    assert abs(proxy.duration_s - original.duration_s) <= 1 / original.fps + 1e-6
    windows = [w for lane in a["runs"] for w in lane["windows"]]
    assert all((out / w["strip"]).is_file() and len(w["times"]) == 4 for w in windows)
    # Runs that sample alike share their strips.
    assert a["runs"][0]["windows"][0]["strip"] == a["runs"][1]["windows"][0]["strip"]
    assert a["runs"][0]["windows"][0]["truth"] == a["runs"][0]["windows"][0]["labels"]
    # A rebuild into the folder (a copy here) reuses the proxy of an unchanged video.
    again = shutil.copytree(out, tmp_path / "again")
    made = (again / urllib.parse.unquote(b["src"])).stat().st_mtime_ns
    assert main(["review", str(site["root"] / "mean"), "--out", str(again)]) == 0
    assert (again / urllib.parse.unquote(b["src"])).stat().st_mtime_ns == made
    assert len(list((again / "strips").iterdir())) == 10  # 7 + 3 windows, one sampling
    assert a["truth"][a["runs"][0]["windows"][0]["labels"][0]] == [[0.0, 2.0]]


def test_a_gif_gets_a_proxy_with_its_frames_at_their_times(tmp_path):
    gif = write_test_video(tmp_path / "g.gif", n_frames=12, fps=10.0)
    proxy = make_proxy(gif, tmp_path / "g.mp4")
    got, want = probe(proxy), probe(gif)
    assert got.codec.lower() in ("avc1", "h264") and got.frame_count == want.frame_count
    assert abs(got.duration_s - want.duration_s) <= 1 / want.fps + 1e-6


def test_data_cannot_close_its_script_element():
    text = _json_for_script({"x": "</script><!--<script>&"})
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == {"x": "</script><!--<script>&"}


def test_a_folder_that_is_no_run_is_one_line_naming_it(tmp_path, capsys):
    assert main(["review", str(tmp_path), "--out", str(tmp_path / "site")]) == 2
    err = capsys.readouterr().err.strip()
    assert str(tmp_path) in err and "vara run" in err and "\n" not in err


def _mouse(page: Page, x: float, y: float, kind: str = "click") -> None:
    types = {"click": ("mousePressed", "mouseReleased"), "down": ("mousePressed",)}
    types |= {"move": ("mouseMoved",), "up": ("mouseReleased",)}
    for t in types[kind]:
        page.call(
            "Input.dispatchMouseEvent",
            {"type": t, "x": x, "y": y, "button": "left", "buttons": 1, "clickCount": 1},
        )


def _click(page: Page, selector: str) -> None:
    """A real mouse click in the middle of the element, scrolled into view first."""
    box = page.evaluate(
        f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
        "e.scrollIntoView({block: 'center'}); const b = e.getBoundingClientRect();"
        "return [b.left + b.width / 2, b.top + b.height / 2]; })()"
    )
    _mouse(page, *box)


def _time_near(page: Page, target: float) -> float:
    """The player's time once it has settled (a seek takes a moment)."""
    deadline = time.monotonic() + 10
    while True:
        t, seeking = page.evaluate("[player.currentTime, player.seeking]")
        if (not seeking and abs(t - target) < 0.1) or time.monotonic() > deadline:
            return t
        time.sleep(0.05)


def _differ_from_truth(site) -> int:
    lanes = _data(site["out"])["videos"][0]["runs"]
    ws = [w for lane in lanes for w in lane["windows"] if w["status"] == "ok" and "truth" in w]
    n = sum(set(w["labels"]) != set(w["truth"]) for w in ws)
    assert 0 < n < len(ws)  # a count that tells the filter from none
    return n


def _disagree(site) -> int:
    a, b = (lane["windows"] for lane in _data(site["out"])["videos"][0]["runs"])
    b = {w["id"]: w for w in b}
    both = [(w, b[w["id"]]) for w in a if w["status"] == b[w["id"]]["status"] == "ok"]
    n = 2 * sum(set(x["labels"]) != set(y["labels"]) for x, y in both)
    assert n > 0
    return n


def _playhead_at(page: Page, t: float) -> bool:
    """Whether the canvas shows the playhead's red within 3 px of time ``t`` (polled: a seek,
    then a frame; the line is antialiased)."""
    probe_js = (
        "(() => { const c = document.getElementById('lanes'), d = window.devicePixelRatio || 1;"
        f"const [x, y] = review.xy('marks', undefined, {t}), b = c.getBoundingClientRect();"
        "return Array.from(c.getContext('2d').getImageData(Math.round((x - b.left) * d) - 3,"
        " Math.round((y - b.top) * d), 7, 1).data); })()"
    )
    deadline = time.monotonic() + 5
    while True:
        px = page.evaluate(probe_js)
        rgb = zip(px[0::4], px[1::4], px[2::4], strict=True)
        red = any(r > 180 and g < 120 and b < 130 for r, g, b in rgb)
        if red or time.monotonic() > deadline:
            return red
        time.sleep(0.1)


def _key(page: Page, key: str) -> None:
    for t in ("keyDown", "keyUp"):
        page.call("Input.dispatchKeyEvent", {"type": t, "key": key, "text": key})


@needs_chromium
def test_the_page_in_chromium_seeks_shows_escapes_and_exports(site, tmp_path):
    record = site["record"]
    label = record["labels"][0]
    windows = {w["id"]: w for w in _data(site["out"])["videos"][0]["runs"][0]["windows"]}
    with Page(site["out"] / "index.html", tmp_path / "profile", width=1400) as page:
        assert page.evaluate("player.readyState >= 1 && player.duration") == pytest.approx(8.0)
        # Clicking the window's segment on its run's lane opens its card and seeks to its start.
        x, y = page.evaluate(f"review.xy('run', {json.dumps(label)}, 4.0, 0)")
        _mouse(page, x, y)
        assert page.evaluate("document.querySelector('#card h3').textContent") == WINDOW
        assert "EXPL-MARKER" in page.evaluate("document.querySelector('#card .expl').textContent")
        assert abs(_time_near(page, 3.0) - 3.0) < 0.1
        # Model text is text: the hostile caption and explanation did not become elements.
        caps = page.evaluate(
            "[...document.querySelectorAll('#card ol.caps li')].map(n => n.firstChild.textContent)"
        )
        assert HOSTILE in caps
        assert page.evaluate("window.__pwned === undefined")
        assert (
            page.evaluate("document.querySelectorAll('#card script, #card b, .expl img').length")
            == 0
        )
        # Evidence refs: t=4.20s seeks, caption:2 highlights the second caption.
        _click(page, "#card a.ref")
        assert abs(_time_near(page, 4.2) - 4.2) < 0.1
        _click(page, "#card ul.ev li:nth-child(2) a.ref")
        assert page.evaluate(
            "[...document.querySelectorAll('#card ol.caps li')].map(n => n.className)"
        ) == ["", "hl"]
        # The keyboard steps to the next window, which opens and seeks.
        _key(page, "n")
        assert page.evaluate("document.querySelector('#card h3').textContent") == "a.mp4:4.00-6.00"
        assert abs(_time_near(page, 4.0) - 4.0) < 0.1
        # A correction: WINDOW gets a label no run gave this video, then its event is dragged
        # one second longer on the corrected lane.
        _key(page, "p")
        new = next(
            n for n in KINETICS.names if all(n not in w.get("labels", []) for w in windows.values())
        )
        _click(page, f"#card .corr input[data-label={json.dumps(new)}]")
        end = page.evaluate(f"review.xy('corr', {json.dumps(new)}, 5.0)")
        to = page.evaluate(f"review.xy('corr', {json.dumps(new)}, 6.0)")
        _mouse(page, *end, "down")
        _mouse(page, *to, "move")
        _mouse(page, *to, "up")
        _click(page, "#export")
        href = page.evaluate("document.getElementById('export-link').href")
        # Filters count what the data says; space plays and pauses.
        for box, want in (("#f-truth", _differ_from_truth(site)), ("#f-runs", _disagree(site))):
            _click(page, box)
            assert page.evaluate("document.getElementById('f-count').textContent") == (
                f"{want} window(s) match"
            )
            _click(page, box)
        assert page.evaluate("document.activeElement.id") == "f-runs"  # keys work from there
        # The failed filter finds the failed window; its card says why, as text.
        _click(page, "#f-failed")
        assert page.evaluate("document.getElementById('f-count').textContent") == (
            "1 window(s) match"
        )
        _key(page, "n")
        assert page.evaluate("document.querySelector('#card h3').textContent") == FAILED
        assert page.evaluate("document.querySelector('#card .failure').textContent") == (
            "answer: no valid JSON"
        )
        assert page.evaluate("document.querySelector('#card pre').textContent") == "<i>raw</i>"
        _click(page, "#f-failed")
        _key(page, " ")
        assert page.evaluate("player.paused") is False
        _key(page, " ")
        assert page.evaluate("player.paused") is True
        assert page.evaluate("document.getElementById('f-runs').checked") is False
        # The other way round: the player seeks, the playhead moves on the lanes.
        page.evaluate("player.currentTime = 6.5")
        assert _playhead_at(page, 6.5) and not _playhead_at(page, 1.0)
        page.screenshot(tmp_path / "review.png", height=1000)
    assert (tmp_path / "review.png").read_bytes()[:4] == b"\x89PNG"
    prefix = "data:text/csv;charset=utf-8,"
    assert href.startswith(prefix)
    csv_text = urllib.parse.unquote(href[len(prefix) :])
    lines = csv_text.splitlines()
    assert lines[0] == "video,label,start_s,end_s"
    mine = [r.split(",") for r in lines[1:] if f",{new}," in r]
    assert len(mine) == 1 and mine[0][0] == str(site["root"] / "a.mp4")
    assert float(mine[0][2]) == pytest.approx(3.0) and float(mine[0][3]) == pytest.approx(
        6.0, abs=0.05
    )
    # The export is a manifest: the corrected windows come back, and vara eval runs on it.
    manifest = tmp_path / "corrections.csv"
    manifest.write_text(csv_text)
    clips = load_dataset(manifest, KINETICS).clips
    got = {f"{Path(c.video).name}:{c.start_s:.2f}-{c.end_s:.2f}": c.labels for c in clips}
    assert got[WINDOW] == (new,) and got["a.mp4:4.00-6.00"] == (new,)
    assert got["a.mp4:1.00-3.00"] != (new,) and len(got) == 7 + 3  # a.mp4: 7 windows, b.avi: 3
    args = ["eval", str(manifest), "--labels", "kinetics-sample", "--strategy", "clip"]
    args += ["--set", f"scorer.model={site['model']}", "--frames", "4", "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "eval")]) == 0
    results = json.loads((tmp_path / "eval" / "clip" / "results.json").read_text())
    assert results["run_info"]["counts"]["n_clips"] == len(got)
    # An eval out dir is reviewed with its own truth: the corrected labels.
    assert main(["review", str(tmp_path / "eval"), "--out", str(tmp_path / "again")]) == 0
    data = _data(tmp_path / "again")
    assert data["truth_source"] == "clips.jsonl" and data["runs"][0]["name"] == "clip"
    (lane,) = data["videos"][0]["runs"]
    assert {w["id"].split(":", 1)[1]: w["truth"] for w in lane["windows"]}["3.00-5.00"] == [new]


def test_a_window_takes_the_truth_of_the_trimmed_clip_that_holds_it():
    """A clip manifest of trimmed videos (the shared clips') labels each whole video: a run's
    2-s windows inside it take its labels; an exact window still wins; two holders, none."""
    from vara.eval.review_windows import Truth
    from vara.types import Clip

    video = Path("/v/a.mp4")
    truth = Truth({(str(video), 0.0, 10.01): ("tai chi",), (str(video), 2.0, 4.0): ("yoga",)})
    assert truth.of_window(video, Clip("a:6.00-8.00", str(video), 6.0, 8.0)) == ("tai chi",)
    assert truth.of_window(video, Clip("a:2.00-4.00", str(video), 2.0, 4.0)) == ("yoga",)
    assert truth.of_window(video, Clip("a:3.00-5.00", str(video), 3.0, 5.0)) == ("tai chi",)
    both = Truth({(str(video), 0.0, 10.0): ("tai chi",), (str(video), 0.0, 6.0): ("yoga",)})
    assert both.of_window(video, Clip("a:1.00-3.00", str(video), 1.0, 3.0)) is None
    assert truth.of_window(Path("/v/b.mp4"), Clip("b:0.00-2.00", "/v/b.mp4", 0.0, 2.0)) is None


def test_the_proxy_of_an_avi_with_packed_b_frames_keeps_its_constant_rate(shared_videos, tmp_path):
    """The shared UCF-101 AVI decodes with out-of-order stamps; its proxy's frames are at
    i / 25 s, as vara windows it, not every third one late (a VFR proxy)."""
    src = shared_videos / "ApplyEyeMakeup.avi"
    got, want = probe(make_proxy(src, tmp_path / "p.mp4")), probe(src)
    assert got.frame_times_s is None and got.fps == pytest.approx(want.fps)
    assert got.frame_count == want.frame_count and got.duration_s == pytest.approx(want.duration_s)


def test_a_run_with_nothing_predicted_yet_is_refused_naming_it(site, tmp_path):
    run = tmp_path / "started"
    run.mkdir()
    shutil.copy(site["root"] / "mean" / "run.json", run / "run.json")
    (run / "predictions.jsonl").write_text("")
    with pytest.raises(InputError, match="no window predicted or failed yet"):
        build_review([run], tmp_path / "page")
    assert not (tmp_path / "page").exists()
