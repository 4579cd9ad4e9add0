"""Label-set files are validated against prompts/labelset.schema.json: a malformed one is
one line naming the file and the field (exit 2), never a silent reading or a traceback."""

from __future__ import annotations

import pytest
from conftest import vara

from vara.errors import ConfigError
from vara.prompts.loader import list_labelsets, load_labelset

GOOD = "name: x\nmulti_label: false\nlabels:\n  - {name: a, description: A}\n"


@pytest.mark.parametrize(
    "text, field, fix",
    [
        # a quoted boolean used to make the set multi-label without a word
        (GOOD.replace("false", '"false"'), "multi_label", "write true or false, unquoted"),
        (GOOD.replace("multi_label: false\n", ""), "(top level)", "'multi_label' is a required"),
        (GOOD.split("labels:")[0] + "labels: [foo, bar]\n", "labels.0", "{name: ..., desc"),
        (GOOD.replace("multi_label", "multilabel"), "(top level)", "did you mean 'multi_label'"),
        (GOOD.replace("{name: a", "{nam: a"), "labels.0", "did you mean 'name'"),
        (GOOD + "  - {name: a, description: again}\n", "x", "repeats labels ['a']"),
    ],
)
def test_a_malformed_label_set_is_one_line_naming_file_and_field(tmp_path, text, field, fix):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_labelset(path)
    message = str(info.value)
    assert message.startswith(f"label set {path}: ") and "\n" not in message
    assert field in message and fix in message, message
    r = vara("labels", "check", str(path))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and str(path) in r.stderr


def test_labels_check_accepts_the_packaged_sets_and_runs_nothing(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text(GOOD)
    r = vara("labels", "check", str(good))
    assert r.returncode == 0 and "ok, 'x', 1 labels, single-label" in r.stdout
    for name in list_labelsets():
        load_labelset(name)  # the packaged ones satisfy their own schema
    assert vara("labels", "check").returncode == 2
