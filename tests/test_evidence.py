"""The quote check by hand: normalised substring, the fuzzy score's threshold, marking."""

from __future__ import annotations

import pytest

from vara.tools.evidence import QUOTE_THRESHOLD, check_evidence, normalise, quote_score
from vara.tools.reason import AnswerInvalid
from vara.types import Evidence

CAPTION = "A gloved hand holds a round, green mask over the baby's face; a tube lies nearby."


def test_normalised_substrings_are_found():
    assert normalise("  The Baby's\nFACE!  ") == "the baby s face"
    assert quote_score("round, green MASK over", CAPTION) == 1.0
    assert quote_score("holds a round green mask", CAPTION) == 1.0


def test_near_quotes_pass_and_fabrications_do_not():
    # one word changed in a long quote: most of it is there, in order
    assert quote_score("a gloved hand holds a round green mask over the babys face", CAPTION) >= (
        QUOTE_THRESHOLD
    )
    assert quote_score("the nurse squeezes the bag twice", CAPTION) < QUOTE_THRESHOLD
    assert quote_score("suction catheter in the mouth", CAPTION) < QUOTE_THRESHOLD
    assert quote_score("", CAPTION) == 0.0


def test_marking_and_the_reask_message():
    sources = {"caption:1": CAPTION, "t=0.25s": None}
    ok = Evidence("caption", "caption:1", "green mask over the baby")
    bad = Evidence("caption", "caption:1", "chest compressions")
    frame = Evidence("frame", "t=0.25s", "a mask")
    with pytest.raises(AnswerInvalid, match=r"evidence 2 quotes 'chest compressions', which"):
        check_evidence((ok, bad, frame), sources, final=False)
    marked = check_evidence((ok, bad, frame), sources, final=True)
    assert [e.verified for e in marked] == [True, False, None]
    assert check_evidence((ok, frame), sources, final=False)[0].verified is True
