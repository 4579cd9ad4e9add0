"""Checked evidence end to end: hand-written captions and answers through `vara eval`'s
runner; results.json counts the verified quotes and the HTML report marks the others."""

from __future__ import annotations

import json

from vara.agents.models import ModelPool
from vara.agents.strategies import load_strategy
from vara.eval.report import find_runs, write_report
from vara.eval.runner import evaluate
from vara.prompts.loader import load_labelset
from vara.testing import ScriptedChatModel, write_test_video
from vara.tools.datasets import load_dataset

NEWBORN = load_labelset("newborn-resuscitation")
CAPTION = "A gloved hand holds a round mask over the baby's face."


def _answer(quote: str) -> str:
    evidence = [{"ref": "caption:1", "text": quote}]
    return json.dumps({"evidence": evidence, "labels": ["Ventilation"], "explanation": "x"})


def test_results_count_verified_quotes_and_the_report_marks_unverified_ones(tmp_path):
    # two whole-video clips: the first answer quotes the caption, the second fabricates twice
    for name in ("a.mp4", "b.mp4"):
        write_test_video(tmp_path / name, n_frames=50, fps=25.0)
    (tmp_path / "clips.csv").write_text("video,labels\na.mp4,Ventilation\nb.mp4,Ventilation\n")
    dataset = load_dataset(tmp_path / "clips.csv", NEWBORN)
    strategy = load_strategy("caption-reason", ["sampler.n_frames=2", "concurrency=1"])
    vlm = ScriptedChatModel([CAPTION, CAPTION], "vlm-x")
    fabricated = _answer("the nurse squeezes the bag")
    llm = ScriptedChatModel([_answer("holds a round mask"), fabricated, fabricated], "llm-y")
    [path] = evaluate(
        dataset,
        NEWBORN,
        [strategy],
        tmp_path / "eval",
        progress=False,
        models=ModelPool(vlm=vlm, llm=llm),
    )
    metrics = json.loads(path.read_text())["metrics"]
    assert metrics["evidence"] == {
        "quotes": 2,
        "checked": 2,
        "verified": 1,
        "unverified": 1,
        "verified_share": 0.5,
    }
    assert metrics["evidence_verified_share"] == 0.5
    assert metrics["hallucination_rate"] == 0.5  # the fabrication needed a re-ask
    _, html = write_report(find_runs([tmp_path / "eval"]), tmp_path / "report", thumbs=0)
    page = html.read_text()
    assert page.count('class="unverified"') == 1 and page.count('class="quoted"') == 1
    assert "evidence verified" in page and "0.500" in page
