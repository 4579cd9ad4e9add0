"""Prompt loading, strict rendering, provenance, overrides, and pinned rendered text."""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path

import pytest

from vara.errors import ConfigError
from vara.prompts.loader import (
    example_variables,
    list_labelsets,
    list_prompts,
    load_labelset,
    load_prompt,
)

NEWBORN = load_labelset("newborn-resuscitation")
KINETICS = load_labelset("kinetics-sample")
MANIFEST_LABELS = {
    "arm wrestling",
    "cleaning pool",
    "ApplyEyeMakeup",
    "playing basketball",
    "clean and jerk",
    "skateboarding",
    "tai chi",
}


def test_packaged_label_sets():
    assert {"newborn-resuscitation", "kinetics-sample"} <= set(list_labelsets())
    assert NEWBORN.names == ("Ventilation", "Stimulation", "Suction")
    assert NEWBORN.multi_label and NEWBORN.exclusive == (("Ventilation", "Suction"),)
    assert not KINETICS.multi_label
    assert MANIFEST_LABELS <= set(KINETICS.names)
    distractors = set(KINETICS.names) - MANIFEST_LABELS
    assert len(distractors) >= len(MANIFEST_LABELS)


def test_kinetics_sample_covers_the_shared_manifest(shared_videos):
    import csv

    rows = list(csv.DictReader(open(shared_videos / "manifest.csv")))
    assert {r["label"] for r in rows} <= set(KINETICS.names)


def test_user_label_set_file(tmp_path):
    f = tmp_path / "mine.yaml"
    f.write_text(
        "name: mine\nmulti_label: true\nlabels:\n  - {name: CPR, description: chest compressions}\n"
    )
    assert load_labelset(f).names == ("CPR",)
    f.write_text("name: mine\nlabels: []\n")
    with pytest.raises(ConfigError, match="mine.yaml"):
        load_labelset(f)


def test_provenance_hash_is_of_the_file_and_its_schema():
    p = load_prompt("reason.v1")
    root = resources.files("vara.prompts")
    h = hashlib.sha256(root.joinpath("reason.v1.yaml").read_bytes())
    h.update(root.joinpath("answer.v1.schema.json").read_bytes())
    assert p.sha256 == h.hexdigest()
    assert p.ref.id == "reason" and p.ref.version == 1
    assert p.schema == json.loads(root.joinpath("answer.v1.schema.json").read_text())


def test_missing_variable_fails_loudly():
    with pytest.raises(ConfigError, match="'captions' is undefined"):
        load_prompt("reason").render(labelset=NEWBORN, start_s=0.0, end_s=2.0)


def test_prompts_dir_shadows_and_adds(tmp_path):
    (tmp_path / "reason.v2.yaml").write_text("user: 'only {{ x }}'\n")
    assert ("reason", 2) in list_prompts(tmp_path)
    assert load_prompt("reason", tmp_path).version == 2  # latest wins
    assert load_prompt("reason.v1", tmp_path).version == 1
    assert load_prompt("reason", tmp_path).render(x="this").user == "only this"
    with pytest.raises(ConfigError, match="versions of 'reason'"):
        load_prompt("reason.v9", tmp_path)
    with pytest.raises(ConfigError, match="not a directory"):
        load_prompt("reason", tmp_path / "nope")
    (tmp_path / "bad.v1.yaml").write_text("system: no user key\n")
    with pytest.raises(ConfigError, match="needs a 'user'"):
        load_prompt("bad", tmp_path)


# Snapshot of every packaged prompt rendered with prompts/examples.yaml and the newborn set:
# an edit to a released prompt shows up here (and should be a new version instead).
SNAPSHOT_DIR = Path(__file__).parent / "snapshots" / "prompts"


@pytest.mark.parametrize("pid, version", list_prompts())
def test_rendered_prompt_snapshot(pid, version):
    rendered = load_prompt(f"{pid}.v{version}").render(**example_variables(NEWBORN))
    text = f"--- system ---\n{rendered.system}\n--- user ---\n{rendered.user}\n"
    snap = SNAPSHOT_DIR / f"{pid}.v{version}.txt"
    if not snap.exists():  # a new prompt: write its first snapshot, review it, commit it
        snap.parent.mkdir(parents=True, exist_ok=True)
        snap.write_text(text)
        pytest.fail(f"wrote a new snapshot {snap}; review and commit it")
    assert text == snap.read_text(), f"{pid}.v{version} renders differently from {snap}"


def test_system_prompts_list_every_label_and_rule():
    variables = example_variables(NEWBORN)
    for ref in ("reason.v1", "direct.v1", "narrative.v1"):
        system = load_prompt(ref).render(**variables).system
        for label in NEWBORN.labels:
            assert f"- {label.name}: {label.description}" in system
        for rule in NEWBORN.rules:
            assert f"- {rule}" in system
        assert "\n\n" not in system


def test_example_variables_fit_the_label_set(tmp_path):
    """`vara prompts render --labels kinetics-sample` shows a kinetics clip, not a newborn's;
    a label set of one's own gets neutral captions and scores of its own labels."""
    kinetics = example_variables(KINETICS)
    text = " ".join(c["text"] for c in kinetics["captions"])
    assert "eyelid" in text and "mannequin" not in text
    assert set(kinetics["predicted"]) <= set(KINETICS.names)
    assert {s["label"] for s in kinetics["scores"]} <= set(KINETICS.names)
    assert "'applying mascara' is not one of" in kinetics["error"]
    assert "mannequin" in example_variables(NEWBORN)["captions"][0]["text"]

    own = tmp_path / "kitchen.yaml"
    own.write_text(
        "name: kitchen\ndescription: Cooking.\nmulti_label: false\nlabels:\n"
        "  - {name: chop, description: Cuts food.}\n"
        "  - {name: stir, description: Stirs a pot.}\n"
    )
    variables = example_variables(load_labelset(own))
    assert "mannequin" not in variables["captions"][0]["text"]
    assert [s["label"] for s in variables["scores"]] == ["chop", "stir"]
    assert variables["predicted"] == ["chop"]
    assert "is not one of ['chop', 'stir']" in variables["error"]
    for pid, version in list_prompts():  # every packaged prompt renders with them
        load_prompt(f"{pid}.v{version}").render(**variables)


def test_a_prompt_in_prompts_dir_may_reuse_a_packaged_schema(tmp_path):
    (tmp_path / "reason.v2.yaml").write_text("schema: answer.v1.schema.json\nuser: hi\n")
    assert load_prompt("reason.v2", tmp_path).schema == load_prompt("reason.v1").schema
    (tmp_path / "reason.v3.yaml").write_text("schema: nope.schema.json\nuser: hi\n")
    with pytest.raises(ConfigError, match="neither beside it nor among the packaged"):
        load_prompt("reason.v3", tmp_path)


def test_prompts_cli_list_show_render_diff(tmp_path, capsys):
    from vara.cli import main

    assert main(["prompts", "list"]) == 0
    listed = capsys.readouterr().out
    for pid, version in list_prompts():
        assert f"{pid}.v{version}" in listed
    assert main(["prompts", "show", "reask.v1"]) == 0
    assert "That answer was rejected" in capsys.readouterr().out
    assert main(["prompts", "render", "judge", "--labels", "kinetics-sample"]) == 0
    rendered = capsys.readouterr().out
    assert "--- user ---" in rendered and 'Does "arm wrestling" happen' in rendered
    v1 = (Path(__file__).resolve().parents[1] / "prompts" / "reason.v1.yaml").read_text()
    (tmp_path / "reason.v2.yaml").write_text(v1.replace("careful", "meticulous"))
    assert main(["prompts", "diff", "reason.v1", "reason.v2", "--prompts-dir", str(tmp_path)]) == 0
    diff = capsys.readouterr().out
    assert main(["prompts", "list", "--prompts-dir", str(tmp_path)]) == 0
    listed = capsys.readouterr()
    marked = [ln.split()[0] for ln in listed.out.splitlines() if ln.split()[0].endswith("*")]
    assert marked == ["reason.v2*"] and str(tmp_path) in listed.err
    assert main(["prompts", "show", "reason.v2", "--prompts-dir", str(tmp_path)]) == 0
    shown = capsys.readouterr()
    assert shown.err.strip() == f"# {tmp_path / 'reason.v2.yaml'}" and "meticulous" in shown.out
    changed = [ln for ln in diff.splitlines() if ln[:1] in "+-" and "annotator" in ln]
    assert changed == [
        "-  You are a careful annotator of videos. Setting: {{ labelset.description }}",
        "+  You are a meticulous annotator of videos. Setting: {{ labelset.description }}",
    ]
    assert main(["prompts", "render", "nope.v1"]) == 2
    assert "'nope.v1' not found; known prompt ids" in capsys.readouterr().err
    assert main(["prompts", "show", "reasn"]) == 2  # a typo gets the close match
    assert "'reasn' not found (did you mean 'reason'?)" in capsys.readouterr().err
    assert main(["prompts", "render", "judge", "--labels", "kinetics-sampel"]) == 2
    assert "(did you mean 'kinetics-sample'?); packaged" in capsys.readouterr().err
    assert main(["prompts", "render", "reason", "--var", "captoins=[]"]) == 2  # never ignored
    err = capsys.readouterr().err
    assert "has no variable 'captoins' (did you mean 'captions'?); it reads [" in err, err
    assert main(["prompts", "render", "reason", "--var", "end_s=9.5"]) == 0
    assert "9.50 s" in capsys.readouterr().out
    assert main(["prompts", "list", "reason"]) == 2
    assert "takes no prompt id" in capsys.readouterr().err


def test_a_reader_that_leaves_early_is_no_error():
    """`vara prompts list | head -1`: the pipe closes before vara writes; no traceback."""
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "vara.cli", "prompts", "list"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.close()  # before the interpreter has even started
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and b"Traceback" not in err and b"BrokenPipe" not in err, err


def test_a_prompt_reading_a_variable_vara_never_passes_is_refused_before_any_window(tmp_path):
    """A typo in a --prompts-dir template fails the run up front, not once per window."""
    from vara.agents.runner import run_clips
    from vara.agents.strategies import load_strategy
    from vara.prompts.loader import unknown_variables

    for pid, version in list_prompts():
        assert unknown_variables(load_prompt(f"{pid}.v{version}")) is None
    v1 = (Path(__file__).resolve().parents[1] / "prompts" / "reason.v1.yaml").read_text()
    (tmp_path / "reason.v2.yaml").write_text(v1.replace("format(end_s)", "format(ends_s)"))
    strategy = load_strategy("caption-reason", ["prompts.answer=reason.v2"])
    with pytest.raises(ConfigError, match=r"reads \['ends_s'\] \(did you mean 'end_s'\?\)"):
        run_clips(
            [],
            strategy,
            load_labelset("kinetics-sample"),
            tmp_path / "out",
            prompts_dir=str(tmp_path),
            progress=False,
        )
    assert not (tmp_path / "out").exists()
