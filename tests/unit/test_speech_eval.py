"""The speech evaluation set's ground truth (voicelab.speech_eval): the plan is reproducible and says what the
promoter said, the true verdict follows services.speech.verdict's rules, and the WER counts word edits."""

from __future__ import annotations

import pytest

pytest.importorskip("scipy")

from services.speech.script import default_criteria, lemma, tokens
from services.speech.verdict import VerdictRules
from voicelab import speech_eval
from voicelab.speech_eval import aligned_hits, edit_distance, plan, truth_checks, truth_verdict, wer, words

CRITERIA = default_criteria(speech_eval.PRODUCTS)


def lemmas(text: str) -> str:
    return " " + " ".join(lemma(t) for t in tokens(text)) + " "


ALL = {"greeting": True, "product_named": True, "presentation": True, "offer": True, "goodbye": True}


def truth(customer: bool = True, **said: bool) -> dict[str, bool]:
    return ALL | said | {"customer_share": customer}


def test_plan_is_reproducible_and_says_what_it_claims() -> None:
    assert plan(25, 7).meta() == plan(25, 7).meta()
    assert plan(25, 7).meta() != plan(25, 8).meta()
    for index in range(40):
        dialogue = plan(25, index)
        items = [u.item for u in dialogue.utterances if u.item]
        assert sorted(items) == sorted(k for k, v in dialogue.said.items() if v)
        assert all(u.speaker == "promoter" for u in dialogue.utterances if u.item)
        assert dialogue.utterances[0].speaker == "promoter"
        assert len(dialogue.gaps) == len(dialogue.utterances)
        if dialogue.silent_customer:
            assert sum(u.speaker == "customer" for u in dialogue.utterances) <= 1


def test_wordings_carry_only_their_own_criterion() -> None:
    """Each wording holds a phrase of its criterion (as lemmas: "Золотую арабику"), filler lines none."""
    phrases = {c.key: [lemmas(p) for p in c.phrases] for c in CRITERIA if c.kind == "phrase"}
    for key, wordings in speech_eval.ITEMS.items():
        for text in wordings:
            lowered = lemmas(text)
            assert any(p in lowered for p in phrases[key]), text
            others = [p for k, ps in phrases.items() if k != key for p in ps if p in lowered]
            assert others == [], (text, others)
    neutral = speech_eval.FILLERS + speech_eval.OPENERS + speech_eval.CLOSERS
    for text in neutral:
        assert [p for ps in phrases.values() for p in ps if p in lemmas(text)] == [], text


def test_truth_checks_from_the_plan_and_the_customer_share() -> None:
    dialogue = plan(25, 3)
    found = truth_checks(dialogue, 0.2, CRITERIA)
    assert {k: found[k] for k in dialogue.said} == dialogue.said
    assert found["customer_share"] is True
    assert truth_checks(dialogue, 0.05, CRITERIA)["customer_share"] is False


def test_truth_verdict_mirrors_the_verdict_rules() -> None:
    assert truth_verdict(truth(), CRITERIA) == "approve"
    assert truth_verdict(truth(goodbye=False), CRITERIA) == "approve"  # 4 of 5 = 0.8
    assert truth_verdict(truth(goodbye=False, offer=False), CRITERIA) == "approve"  # 0.6: more than half
    no_three = truth(goodbye=False, offer=False, greeting=False)
    assert truth_verdict(no_three, CRITERIA) == "reject"  # 0.4 <= 0.5
    assert truth_verdict(truth(customer=False), CRITERIA) == "reject"  # a critical item missing
    band = VerdictRules(approve_share=0.75, reject_share=0.35)
    assert truth_verdict(truth(goodbye=False, offer=False), CRITERIA, band) == "partial"
    assert truth_verdict(no_three, CRITERIA, band) == "partial"
    no_four = truth(goodbye=False, offer=False, greeting=False, presentation=False)
    assert truth_verdict(no_four, CRITERIA, band) == "reject"  # 0.2 <= 0.35


def test_words_and_wer() -> None:
    assert words("Всё, ещё раз: До-свидания!") == ["все", "еще", "раз", "до", "свидания"]
    assert edit_distance(["a", "b", "c"], ["a", "c"]) == 1
    assert edit_distance(["a", "b"], ["x", "a", "b", "y"]) == 2
    assert edit_distance([], ["a"]) == 1
    assert wer(["Добрый день!", "Возьмёте пачку?"], ["добрый день", "возьмете бачку"]) == pytest.approx(0.25)
    assert wer(["раз два"], [""]) == 1.0
    assert aligned_hits(["a", "b", "c", "d"], ["a", "x", "d"]) == [True, False, False, True]
