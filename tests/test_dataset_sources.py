"""UCF-101 folders + split lists and Kinetics CSVs as datasets (tools/dataset_sources.py):
what is loaded, every bad input as one error naming the fix, group-wise fine-tuning splits,
`vara labels --from`, and `vara eval ucf101:ROOT --split 1` end to end with a tiny CLIP."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

import pytest
import yaml

from vara.cli import main
from vara.errors import InputError
from vara.finetune import common
from vara.finetune.config import Config, DataSpec
from vara.finetune.data import split_by_video
from vara.prompts.loader import load_labelset
from vara.testing import build_tiny_clip, write_test_video
from vara.tools.dataset_sources import open_dataset, parse_source
from vara.tools.ucf101 import ucf_group
from vara.types import Clip, Label, LabelSet

CLASSES = ("ApplyEyeMakeup", "Archery", "YoYo")
GROUPS = (1, 2, 3)  # split 1 here: g01 tests, g02-g03 train
UCF = LabelSet("ucf-mini", tuple(Label(c, c.lower()) for c in CLASSES), multi_label=False)
KIN = LabelSet(
    "kin-mini",
    tuple(Label(n, n) for n in ("abseiling", "air drumming", "archery")),
    multi_label=False,
)


def _video(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    codec = "mjpg" if path.suffix == ".avi" else "mp4v"
    return write_test_video(path, n_frames=10, fps=10, size=(48, 32), codec=codec, seed=seed)


def _ucf_name(cls: str, g: int, c: int = 1) -> str:
    return f"{cls}/v_{cls}_g{g:02d}_c{c:02d}.avi"


@pytest.fixture(scope="module")
def ucf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ROOT/<class>/v_<class>_gNN_c01.avi (1.0 s each) and split 1 in ROOT/ucfTrainTestlist."""
    root = tmp_path_factory.mktemp("UCF-101")
    for i, cls in enumerate(CLASSES):
        for g in GROUPS:
            _video(root / _ucf_name(cls, g), seed=i * 10 + g)
    lists = root / "ucfTrainTestlist"
    lists.mkdir()
    (lists / "classInd.txt").write_text("".join(f"{i} {c}\n" for i, c in enumerate(CLASSES, 1)))
    train = [f"{_ucf_name(c, g)} {i}" for i, c in enumerate(CLASSES, 1) for g in GROUPS[1:]]
    (lists / "trainlist01.txt").write_text("\r\n".join(train) + "\r\n")  # as the zip has it
    (lists / "testlist01.txt").write_text("".join(f"{_ucf_name(c, 1)}\n" for c in CLASSES))
    return root


def _copy_tree(src: Path, dst: Path, lists: bool = True) -> Path:
    shutil.copytree(src, dst, ignore=None if lists else shutil.ignore_patterns("ucf*"))
    return dst


# ---- UCF-101 ------------------------------------------------------------------------------


def test_split_1_test_list_loads_its_videos_with_class_labels_and_groups(ucf):
    ds = open_dataset(f"ucf101:{ucf}", UCF, split=1)
    assert ds.name == "ucf101-split1-test"
    test_list = ucf / "ucfTrainTestlist" / "testlist01.txt"
    assert ds.path == str(test_list)
    assert ds.sha256 == hashlib.sha256(test_list.read_bytes()).hexdigest()
    assert [c.labels for c in ds.clips] == [(c,) for c in CLASSES]
    first = ds.clips[0]
    assert first.clip_id == "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi:0.00-1.00"
    assert first.video == str(ucf / _ucf_name("ApplyEyeMakeup", 1))
    assert (first.start_s, first.end_s, first.group) == (0.0, 1.0, "g01")


def test_subsets_train_and_all_and_no_split_means_every_video(ucf):
    train = open_dataset(f"ucf101:{ucf}", UCF, split=1, subset="train")
    assert len(train.clips) == 6 and {c.group for c in train.clips} == {"g02", "g03"}
    both = open_dataset(f"ucf101:{ucf}", UCF, split=1, subset="all")
    assert len(both.clips) == 9 and both.name == "ucf101-split1-all"
    every = open_dataset(f"ucf101:{ucf}", UCF)
    assert every.name == "ucf101" and len(every.clips) == 9
    assert {c.labels[0] for c in every.clips} == set(CLASSES)
    with pytest.raises(InputError, match="--subset train picks a side of a split list"):
        open_dataset(f"ucf101:{ucf}", UCF, subset="train")
    with pytest.raises(InputError, match="no validation list"):
        open_dataset(f"ucf101:{ucf}", UCF, split=1, subset="val")


def test_split_2_without_its_list_and_split_without_any_list_say_what_is_there(ucf, tmp_path):
    with pytest.raises(InputError, match=r"testlist02.txt not found.*testlist01.txt"):
        open_dataset(f"ucf101:{ucf}", UCF, split=2)
    bare = _copy_tree(ucf, tmp_path / "bare", lists=False)
    assert len(open_dataset(f"ucf101:{bare}", UCF).clips) == 9
    with pytest.raises(InputError, match="needs the official split lists.*drop --split"):
        open_dataset(f"ucf101:{bare}", UCF, split=1)


def test_lists_in_root_itself_and_capitals_that_differ_from_the_disk(ucf, tmp_path):
    root = _copy_tree(ucf, tmp_path / "flat", lists=False)
    for f in (ucf / "ucfTrainTestlist").iterdir():
        shutil.copy(f, root / f.name)
    (root / "testlist01.txt").write_text("applyeyemakeup/v_ApplyEyeMakeUp_g01_c01.avi\n")
    ds = open_dataset(f"ucf101:{root}", UCF, split=1)
    assert ds.clips[0].video == str(root / _ucf_name("ApplyEyeMakeup", 1))
    assert ds.clips[0].labels == ("ApplyEyeMakeup",)  # spelt as classInd.txt spells it


def test_a_class_missing_from_the_label_set_names_class_line_and_fix(ucf):
    two = LabelSet("two", UCF.labels[:2], multi_label=False)
    with pytest.raises(InputError) as err:
        open_dataset(f"ucf101:{ucf}", two, split=1)
    msg = str(err.value)
    assert "testlist01.txt line 3: class 'YoYo' is not in label set 'two'" in msg
    assert f"vara labels --from ucf101:{ucf} --out ucf101.yaml" in msg


def test_missing_videos_are_one_error_with_their_count(ucf, tmp_path):
    root = _copy_tree(ucf, tmp_path / "gaps")
    for g in GROUPS[1:]:
        (root / _ucf_name("Archery", g)).unlink()
    with pytest.raises(InputError) as err:
        open_dataset(f"ucf101:{root}", UCF, split=1, subset="train")
    msg = str(err.value)
    assert msg.startswith("2 of 6 listed videos not found (")
    assert "trainlist01.txt line 3: 'Archery/v_Archery_g02_c01.avi'" in msg
    assert "unpack every class folder" in msg


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("v_Archery_g01_c01.avi", "line 1: expected 'ClassName/v_ClassName_gXX_cYY.avi'"),
        ("Archery/v_Archery_g01_c01.avi 1", "class number '1' is 'ApplyEyeMakeup' in classInd"),
        ("Archery/v_Archery_g01_c01.avi\nArchery/v_Archery_g01_c01.avi", "line 2: video .* again"),
    ],
)
def test_bad_list_lines_name_the_line(ucf, tmp_path, line, message):
    root = _copy_tree(ucf, tmp_path / "bad")
    (root / "ucfTrainTestlist" / "testlist01.txt").write_text(line + "\n")
    with pytest.raises(InputError, match=message):
        open_dataset(f"ucf101:{root}", UCF, split=1)


def test_a_real_ucf_clip_loads_under_its_official_name(shared_videos, tmp_path):
    root = tmp_path / "UCF-101"
    (root / "ApplyEyeMakeup").mkdir(parents=True)
    shutil.copy(shared_videos / "ApplyEyeMakeup.avi", root / _ucf_name("ApplyEyeMakeup", 8))
    ds = open_dataset(f"ucf101:{root}", load_labelset("kinetics-sample"))
    (clip,) = ds.clips
    assert clip.labels == ("ApplyEyeMakeup",) and clip.group == "g08"
    assert clip.end_s == pytest.approx(164 / 25, abs=0.05)  # 164 frames at 25 fps


def test_ucf_group_reads_gxx():
    assert ucf_group("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi") == "g08"
    assert ucf_group("/x/v_YoYo_G25_c04.avi") == "g25"
    assert ucf_group("ApplyEyeMakeup.avi") == ""


# ---- label sets from a source -------------------------------------------------------------


def test_vara_labels_from_ucf_writes_a_loadable_single_label_set(ucf, tmp_path, capsys):
    out = tmp_path / "ucf101.yaml"
    assert main(["labels", "--from", f"ucf101:{ucf}", "--out", str(out)]) == 0
    ls = load_labelset(out)
    assert ls.names == CLASSES and not ls.multi_label and ls.name == "ucf101"
    assert ls.labels[0].synonyms == ("apply eye makeup",)
    assert ls.labels[2].description == "yo yo"
    assert f"use --labels {out}" in capsys.readouterr().out
    assert len(open_dataset(f"ucf101:{ucf}", ls, split=1).clips) == 3
    assert main(["labels", "--from", f"ucf101:{ucf}", "--out", str(out)]) == 2  # kept
    assert "exists" in capsys.readouterr().err
    assert main(["labels", "--from", f"ucf101:{ucf}"]) == 0  # no --out: printed
    assert yaml.safe_load(capsys.readouterr().out)["labels"][1]["name"] == "Archery"


# ---- Kinetics ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kinetics(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four rows whose videos are named the four ways downloaders name them."""
    root = tmp_path_factory.mktemp("k400")
    _video(root / "abseiling" / "AAAAAAAAAAA_000004_000014.mp4")  # label folder, full name
    _video(root / "air_drumming" / "BBBBBBBBBBB_000001_000011.avi")  # spaces as underscores
    _video(root / "CCCCCCCCCCC.mp4")  # bare id, in the root
    _video(root / "DDDDDDDDDDD_000030_000040.mov")  # full name, in the root, any extension
    (root / "val.csv").write_text(
        "label,youtube_id,time_start,time_end,split,is_cc\n"
        "abseiling,AAAAAAAAAAA,4,14,train,0\n"
        '"air drumming",BBBBBBBBBBB,1,11,val,0\n'
        "archery,CCCCCCCCCCC,0,10,val,0\n"
        "archery,DDDDDDDDDDD,30,40,train,0\n"
    )
    return root


def test_kinetics_finds_every_downloader_file_name(kinetics):
    ds = open_dataset(f"kinetics:{kinetics / 'val.csv'}", KIN)
    assert ds.name == "val" and ds.path == str(kinetics / "val.csv")
    assert ds.sha256 == hashlib.sha256((kinetics / "val.csv").read_bytes()).hexdigest()
    assert [Path(c.video).relative_to(kinetics).as_posix() for c in ds.clips] == [
        "abseiling/AAAAAAAAAAA_000004_000014.mp4",
        "air_drumming/BBBBBBBBBBB_000001_000011.avi",
        "CCCCCCCCCCC.mp4",
        "DDDDDDDDDDD_000030_000040.mov",
    ]
    assert [c.labels[0] for c in ds.clips] == ["abseiling", "air drumming", "archery", "archery"]
    assert ds.clips[0].clip_id == "abseiling/AAAAAAAAAAA_000004_000014.mp4:0.00-1.00"
    assert ds.clips[2].group == "CCCCCCCCCCC"
    val = open_dataset(f"kinetics:{kinetics / 'val.csv'}", KIN, subset="val")
    assert val.name == "val-val" and [c.group for c in val.clips] == ["BBBBBBBBBBB", "CCCCCCCCCCC"]


def test_kinetics_video_root_and_missing_videos(kinetics, tmp_path):
    csv = tmp_path / "lists" / "val.csv"
    csv.parent.mkdir()
    shutil.copy(kinetics / "val.csv", csv)
    assert len(open_dataset(f"kinetics:{csv}", KIN, video_root=kinetics).clips) == 4
    with pytest.raises(InputError) as err:
        open_dataset(f"kinetics:{csv}", KIN)  # the CSV's own folder holds no videos
    msg = str(err.value)
    assert msg.startswith("4 of 4 listed videos not found (")
    assert f"{csv} line 2: 'AAAAAAAAAAA_000004_000014'" in msg and "--video-root" in msg


@pytest.mark.parametrize(
    ("text", "subset", "message"),
    [
        ("youtube_id,time_start,time_end\nx,0,10\n", None, r"no \['label'\] column.*test CSVs"),
        ("label,youtube_id,time_start,time_end\nabseiling,x,0,10\n", "val", "no 'split' column"),
        ("label,youtube_id,time_start,time_end\nabseiling,x,4.5,10\n", None, "line 2: time_start"),
        ("label,youtube_id,time_start,time_end\nabseiling,x,10,4\n", None, "line 2: time_start 10"),
        ("label,youtube_id,time_start,time_end,split\nabseiling,x,0,10,train\n", "test", "found"),
    ],
)
def test_bad_kinetics_csvs_name_the_problem(tmp_path, text, subset, message):
    (tmp_path / "k.csv").write_text(text)
    with pytest.raises(InputError, match=message):
        open_dataset(f"kinetics:{tmp_path / 'k.csv'}", KIN, subset=subset)


def test_kinetics_classes_must_be_in_the_label_set_and_labels_from_makes_them(kinetics, tmp_path):
    spec = f"kinetics:{kinetics / 'val.csv'}"
    with pytest.raises(InputError, match="line 3: class 'air drumming' is not in label set"):
        open_dataset(spec, LabelSet("one", KIN.labels[:1], multi_label=False))
    out = tmp_path / "k.yaml"
    assert main(["labels", "--from", spec, "--out", str(out)]) == 0
    assert load_labelset(out).names == ("abseiling", "air drumming", "archery")


def test_an_untrimmed_file_is_used_whole_with_a_warning(tmp_path, caplog):
    write_test_video(tmp_path / "EEEEEEEEEEE.avi", n_frames=50, fps=10, size=(48, 32))
    (tmp_path / "k.csv").write_text(
        "label,youtube_id,time_start,time_end\narchery,EEEEEEEEEEE,0,2\n"
    )
    with caplog.at_level(logging.WARNING, logger="vara"):
        ds = open_dataset(f"kinetics:{tmp_path / 'k.csv'}", KIN)
    assert ds.clips[0].end_s == 5.0
    assert "untrimmed?" in caplog.text


# ---- the dispatcher -------------------------------------------------------------------------


def test_specs_and_options_a_source_cannot_honour(ucf, tmp_path):
    assert parse_source("runs/m.csv").kind == "manifest"
    assert parse_source("ucf101:/data/UCF-101").path == "/data/UCF-101"
    assert parse_source("C:/data/m.csv").kind == "manifest"  # a drive letter, not a source
    with pytest.raises(InputError, match="unknown dataset source 'ucf'.*'ucf101'"):
        parse_source("ucf:/data/UCF-101")
    with pytest.raises(InputError, match="give a path after 'kinetics:'"):
        parse_source("kinetics:")
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"video,labels\n{ucf / _ucf_name('YoYo', 1)},YoYo\n")
    assert len(open_dataset(manifest, UCF).clips) == 1
    with pytest.raises(InputError, match="--split 1 picks one of UCF-101's numbered splits"):
        open_dataset(manifest, UCF, split=1)
    with pytest.raises(InputError, match="--subset test picks rows of ucf101:ROOT"):
        open_dataset(manifest, UCF, subset="test")
    with pytest.raises(InputError, match="drop --video-root"):
        open_dataset(f"ucf101:{ucf}", UCF, video_root=tmp_path)


# ---- group-wise fine-tuning splits ----------------------------------------------------------


def test_a_group_is_never_on_both_sides_of_a_split():
    clips = [
        Clip(
            f"{cls}/v_{cls}_g{g:02d}_c{c:02d}.avi",
            f"/u/{cls}_g{g}_c{c}.avi",
            0.0,
            5.0,
            (cls,),
            group=f"g{g:02d}",
        )
        for cls in CLASSES
        for g in range(1, 9)
        for c in range(1, 4)
    ]
    for seed in range(25):
        s = split_by_video(clips, val_fraction=0.25, seed=seed)
        train, val = {c.group for c in s.train}, {c.group for c in s.val}
        assert train.isdisjoint(val) and len(val) == 2 and len(train) == 6, seed
        assert len(s.val) == 2 * 3 * 3  # whole groups: every class, every clip of the group
    named = split_by_video(clips, val_videos=["ApplyEyeMakeup_g3_c1.avi"])
    assert {c.group for c in named.val} == {"g03"} and len(named.val_videos) == 9


def test_without_groups_the_split_is_the_same_as_by_video():
    plain = [Clip(f"{v}:{i}", v, i, i + 2.0, ("a",)) for v in "pqrstu" for i in range(3)]
    grouped_as_video = [
        Clip(c.clip_id, c.video, c.start_s, c.end_s, c.labels, c.video) for c in plain
    ]
    for seed in range(5):
        assert (
            split_by_video(plain, seed=seed).val_videos
            == split_by_video(grouped_as_video, seed=seed).val_videos
        )
    with pytest.raises(InputError, match=r"1 group\(s\) of videos"):
        split_by_video([Clip(f"v{i}", f"v{i}", 0, 1, ("a",), group="g01") for i in range(3)])


def test_clip_group_round_trips_and_stays_out_of_old_records():
    old = Clip("a:0-1", "a.mp4", 0.0, 1.0, ("x",))
    assert "group" not in old.to_dict() and Clip.from_dict(old.to_dict()) == old
    new = Clip("a:0-1", "a.mp4", 0.0, 1.0, ("x",), group="g08")
    assert json.loads(json.dumps(new.to_dict()))["group"] == "g08"
    assert Clip.from_dict(new.to_dict()) == new


def test_finetune_data_trains_on_the_split_train_list_held_out_by_group(ucf, tmp_path):
    data = DataSpec(manifest=f"ucf101:{ucf}", split=1, n_frames=2, max_side=32)
    cfg = Config(recipe="lora_classifier", out=str(tmp_path / "run"), data=data)
    out = tmp_path / "run"
    out.mkdir()
    train = common.load_data(cfg, out, UCF, progress=False)
    assert train.dataset.name == "ucf101-split1-train"
    groups = {
        side: {c.group for c in clips}
        for side, clips in (("t", train.split.train), ("v", train.split.val))
    }
    assert groups["t"] | groups["v"] == {"g02", "g03"} and groups["t"].isdisjoint(groups["v"])
    split = json.loads((out / "split.json").read_text())
    assert split["manifest_sha256"] == train.dataset.sha256


# ---- vara eval end to end (in-process CLIP: no server) --------------------------------------


def test_vara_eval_ucf101_split_1_end_to_end(ucf, tmp_path, capsys):
    labels = tmp_path / "ucf101.yaml"
    assert main(["labels", "--from", f"ucf101:{ucf}", "--out", str(labels)]) == 0
    model = build_tiny_clip(tmp_path / "clip")
    out = tmp_path / "eval"
    args = ["eval", f"ucf101:{ucf}", "--split", "1", "--labels", str(labels)]
    args += ["--strategy", "clip", "--set", f"scorer.model={model}", "--frames", "2"]
    args += ["--out", str(out), "--no-progress", "--no-cache"]
    assert main(args) == 0, capsys.readouterr().err
    result = json.loads((out / "clip" / "results.json").read_text())
    info = result["run_info"]["dataset"]
    assert info["name"] == "ucf101-split1-test" and info["n_clips"] == 3
    assert (
        info["sha256"]
        == hashlib.sha256((ucf / "ucfTrainTestlist" / "testlist01.txt").read_bytes()).hexdigest()
    )
    assert main([*args[:3], "2", *args[4:]]) == 2
    assert "testlist02.txt not found" in capsys.readouterr().err
