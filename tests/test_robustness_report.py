"""`vara compare` on a robustness sweep shows one example frame per perturbation level.

A real sweep (`vara eval --strategy clip --sweep ...`, the tiny random CLIP in-process) runs
over two synthetic videos; the report's example row is then checked against frames decoded
here: one PNG per level in level order, the unperturbed one equal to the frame the run's
reader gives at the run's frame index, a 50% mask blacking out half of it, a randomly placed
mask where the run placed it. Headless Chromium loads the page and screenshots the row.

The videos are ``make_frame``'s frames (their index drawn as black/white blocks) lifted off
black, so every black pixel of an example is the mask's and ``frame_number`` still reads
the index back.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from vara.cli import main
from vara.eval.examples import level_runs
from vara.eval.report import find_runs, write_report
from vara.eval.report_html import Example, Examples, Report, render_html
from vara.eval.robustness import level_order
from vara.testing import build_tiny_clip
from vara.testing.browser import CHROMIUM, Page
from vara.testing.synth_video import frame_number, make_frame
from vara.tools.pixels import pixel_spec
from vara.tools.video import probe, read_frames
from vara.tools.windows import plan_frames
from vara.types import Clip, SamplerSpec

LEVELS = ("none", "mask:frac=0.3,place=random", "mask:frac=0.5")
SIZE = (320, 240)  # (w, h): the clip strategy's max_side 224 resizes it to 224 x 168
N_FRAMES = 4  # --frames: the middle of 4 sampled frames is the example


def _write_video(path: Path, n_frames: int, seed: int) -> Path:
    """MJPG frames of ``make_frame`` at grey levels 64..191: no pixel is black."""
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, SIZE)
    for i in range(n_frames):
        frame = make_frame(i, SIZE, seed=seed) // 2 + 64
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """``vara eval`` of the clip strategy at every level, then ``vara compare``: the root."""
    root = tmp_path_factory.mktemp("robust")
    clip_model = build_tiny_clip(root / "clip")
    for seed, name in enumerate(("a.avi", "b.avi")):
        _write_video(root / name, n_frames=75, seed=seed)
    (root / "clips.csv").write_text("video,labels\na.avi,tai chi\nb.avi,yoga\n")
    args = ["eval", str(root / "clips.csv"), "--labels", "kinetics-sample", "--strategy", "clip"]
    args += ["--set", f"scorer.model={clip_model}", "--frames", str(N_FRAMES), "--no-progress"]
    args += ["--sweep", "perturb=" + ",".join(LEVELS), "--out", str(root / "runs")]
    assert main(args) == 0
    assert main(["compare", str(root / "runs"), "--out", str(root / "report")]) == 0
    return root


class _Images(HTMLParser):
    """The ``<img class="example">`` tags of a page, and every tag name."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.examples: list[dict[str, str]] = []
        self.tags: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "img" and dict(attrs).get("class") == "example":
            self.examples.append(dict(attrs))


def _examples(sweep: Path) -> dict[str, np.ndarray]:
    """Level -> the example frame the HTML embeds, decoded from its data URI."""
    page = _Images((sweep / "report" / "report.html").read_text())
    out = {}
    for img in page.examples:
        prefix, _, data = img["src"].partition(",")
        assert prefix == "data:image/png;base64"
        out[img["alt"]] = np.asarray(Image.open(io.BytesIO(base64.b64decode(data))))
    return out


def _run_info(sweep: Path, level: str) -> dict:
    for path in (sweep / "runs").glob("*/results.json"):
        info = json.loads(path.read_text())["run_info"]
        if info["sweep"]["level"] == level:
            return info
    raise AssertionError(f"no run of level {level!r}")


def _seen_by_run(sweep: Path, level: str) -> tuple[np.ndarray, int]:
    """What the run's own reader gives at the middle of its plan for the first window, and
    that frame's index; the sampler and steps as results.json records them."""
    info = _run_info(sweep, level)
    sampler = SamplerSpec.from_dict(info["config"]["sampler"])
    video = sweep / "a.avi"
    idx = plan_frames(probe(video), Clip("a", str(video), 0.0, 3.0), sampler)[N_FRAMES // 2]
    spec = pixel_spec(sampler.max_side, info["config"]["pixels"]["perturb"])
    assert spec.canonical == info["pixels"]
    frames, _ = read_frames(video, [idx], pixels=spec)
    return frames[0], idx


def test_one_png_per_level_in_level_order(sweep):
    page = _Images((sweep / "report" / "report.html").read_text())
    assert [img["alt"] for img in page.examples] == list(LEVELS)
    assert "script" not in page.tags
    for level, frame in _examples(sweep).items():
        assert frame.shape == (168, 224, 3), level  # as the model got it: resized to 224
    md = (sweep / "report" / "report.md").read_text()
    assert "| " + " | ".join(LEVELS) + " |" in md
    names = re.findall(r"\]\((example-\d+-[^)]*\.png)\)", md)
    assert [n.split("-", 2)[1] for n in names] == ["1", "2", "3"]
    for name in names:
        with Image.open(sweep / "report" / name) as png:
            assert png.format == "PNG" and png.size == (224, 168)


def test_examples_are_what_the_model_saw(sweep):
    shown = _examples(sweep)
    none, idx = _seen_by_run(sweep, "none")
    assert np.array_equal(shown["none"], none)
    assert frame_number(shown["none"]) == idx  # the middle of the run's sampled frames
    assert not (none == 0).all(-1).any()  # the video has no black: black is the mask's
    half = (shown["mask:frac=0.5"] == 0).all(-1)
    assert abs(half.mean() - 0.5) <= 0.02
    assert np.array_equal(shown["mask:frac=0.5"][~half], none[~half])
    # A random placement is fixed by (video, frame index, seed): the run's, not another's.
    placed, _ = _seen_by_run(sweep, "mask:frac=0.3,place=random")
    assert np.array_equal(shown["mask:frac=0.3,place=random"], placed)
    spec = pixel_spec(224, ["mask:frac=0.3,place=random"])
    elsewhere = read_frames(sweep / "a.avi", [idx + 1], pixels=spec)[0][0]
    assert not np.array_equal((elsewhere == 0).all(-1), (placed == 0).all(-1))


def test_a_missing_video_gives_the_next_window_or_a_placeholder(sweep, tmp_path):
    runs = find_runs([sweep / "runs"])
    gone = Clip("gone", str(tmp_path / "gone.avi"), 0.0, 1.0, ("yoga",))
    first_gone = [dataclasses.replace(r, clips=(gone, *r.clips)) for r in runs]
    _, html = write_report(first_gone, tmp_path / "next", thumbs=0)
    page = html.read_text()
    assert len(_Images(page).examples) == len(LEVELS) and "Window a.avi" in page
    all_gone = [dataclasses.replace(r, clips=(gone,)) for r in runs]
    md, html = write_report(all_gone, tmp_path / "none", thumbs=0)
    page = html.read_text()
    assert not _Images(page).examples
    assert '<p class="placeholder">no example frames:' in page and "gone.avi" in page
    assert "no example frames:" in md.read_text()


def test_level_text_is_escaped():
    png = io.BytesIO()
    Image.new("RGB", (4, 4)).save(png, format="PNG")
    hostile = "<script>alert(1)</script>"
    examples = Examples(
        window=hostile,
        frames=(Example(hostile, "x.png", png.getvalue(), hostile), Example("<b>", note=hostile)),
    )
    report = Report("t", (), (), None, (), (), 0, examples=examples)
    page = render_html(report)
    assert "script" not in _Images(page).tags and "<b>" not in page
    assert page.count("&lt;script&gt;") == 5  # window; alt, level, caption; a note


def test_levels_sort_none_first_then_by_number():
    levels = ["noise:10", "mask:frac=0.5", "none", "noise:5", "mask:frac=0.1"]
    assert sorted(levels, key=level_order) == [
        "none",
        "mask:frac=0.1",
        "mask:frac=0.5",
        "noise:5",
        "noise:10",
    ]


def test_each_level_shows_the_first_strategys_run_where_it_has_one():
    def run(strategy: str, level: str) -> SimpleNamespace:
        sweep = {"strategy": strategy, "level": level}
        return SimpleNamespace(run_info={"sweep": sweep}, name=f"{strategy}@{level}")

    runs = [run("clip", "mask:frac=0.5"), run("caption-reason", "none"), run("clip", "none")]
    runs += [run("caption-reason", "blur:1"), SimpleNamespace(run_info={}, name="no sweep")]
    assert [(level, r.name) for level, r in level_runs(runs)] == [
        ("none", "clip@none"),
        ("blur:1", "caption-reason@blur:1"),
        ("mask:frac=0.5", "clip@mask:frac=0.5"),
    ]


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} not installed")
def test_chromium_shows_every_example_frame(sweep, tmp_path):
    with Page(sweep / "report" / "report.html", tmp_path / "profile") as page:
        loaded = page.evaluate(
            "[...document.querySelectorAll('img.example')]"
            ".map(i => [i.alt, i.complete, i.naturalWidth, i.getBoundingClientRect().width])"
        )
        page.evaluate("document.querySelector('.examples').closest('section').scrollIntoView()")
        shot = page.screenshot(tmp_path / "examples.png")
    assert [alt for alt, *_ in loaded] == list(LEVELS)
    assert all(done and width == 224 and shown > 100 for _, done, width, shown in loaded)
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.shape == (900, 1280, 3)
    assert pixels.std() > 20 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 500
    assert (pixels == 0).all(-1).mean() > 0.02  # the masks are on screen
