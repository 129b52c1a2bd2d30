"""The promoter's script, checked against who said what, as data.

Each criterion says what counts as done: phrases (any language; any one of them will do), who must say
them (promoter, customer, anyone) and where (the opening, anywhere, the closing); or, for the
`customer_share` kind, how much of the talk must be the customer's. Matching tolerates both the
recogniser's errors and Russian word forms: every word is reduced to its lemma (pymorphy3: "возьмёте" and
"возьмите" are both "взять") and windows of the dialogue's words are compared with each phrase by rapidfuzz's
ratio, on lemmas and on the words as heard, whichever is closer ("зранствуйте" is 87 from "здравствуйте").
Names the recogniser cannot spell (the products': `by_sound`) are also compared by sound: fonetika's Russian
Metaphone key of the words run together, so reduced vowels, voiced/voiceless pairs and where the recogniser
put the word breaks do not count ("с Аллатой Арабика" sounds like "Золотая арабика"). Sound alone only ever
makes a phrase "done", never "unsure"; ordinary phrases are not compared by sound, because the recogniser
spells them and a loose key half-matches too much ("скинка на всё" sounds like "скидка на кофе").

Each check answers done / not_done / unsure with its evidence: the quote, its time and its speaker.
"Unsure" is said when the words were heard but from the wrong speaker or in the wrong place (the
diarisation can be wrong too), or heard only approximately: those go to a person.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from rapidfuzz import fuzz

from services.speech.dialogue import UNKNOWN, Line, talk_seconds
from services.speech.recognizer import Word

Status = Literal["done", "not_done", "unsure"]
Speaker = Literal["promoter", "customer", "any"]
Where = Literal["opening", "anywhere", "closing"]

TOKEN = re.compile(r"[\w-]+", re.UNICODE)
CYRILLIC = re.compile(r"[а-яё]", re.IGNORECASE)


class Criterion(BaseModel):
    """One script item. `scorecard`: the project's scorecard criterion this check pre-fills."""

    model_config = ConfigDict(extra="forbid")
    key: Annotated[str, Field(pattern=r"^[a-z0-9_]{1,24}$")]
    kind: Literal["phrase", "customer_share"] = "phrase"
    phrases: list[Annotated[str, Field(min_length=1, max_length=120)]] = Field(default_factory=list)
    speaker: Speaker = "promoter"
    where: Where = "anywhere"
    critical: bool = False
    min_share: Annotated[float, Field(ge=0.0, le=1.0)] = 0.15  # customer_share: the customer's least share
    by_sound: bool = False  # names the recogniser cannot spell: compared by their sound keys too
    scorecard: str | None = None


class ScriptRules(BaseModel):
    """How close is close enough (rapidfuzz ratio, 0-100) and how long the opening and closing are: the
    first / last `edge_seconds` of the talk, or `edge_share` of it if that is longer. `sound_score`: the
    ratio of sound keys (of `by_sound` phrases, at least `sound_min_length` letters of key) that also
    counts as done."""

    model_config = ConfigDict(extra="forbid")
    criteria: list[Criterion]
    done_score: Annotated[float, Field(ge=50, le=100)] = 84.0
    unsure_score: Annotated[float, Field(ge=40, le=100)] = 70.0
    sound_score: Annotated[float, Field(ge=50, le=100)] = 78.0
    sound_min_length: Annotated[int, Field(ge=1)] = 9
    edge_seconds: Annotated[float, Field(gt=0)] = 15.0
    edge_share: Annotated[float, Field(ge=0, le=1)] = 0.25


@dataclass
class Check:
    key: str
    status: Status
    confidence: float  # how sure this answer is, 0.5..1
    critical: bool = False
    score: float = 0.0  # best match (0-100), or the customer's share of the talk in percent
    quote: str | None = None
    start: float | None = None
    end: float | None = None
    speaker: str | None = None
    note: str | None = None  # why unsure: wrong_speaker, out_of_place, weak_match, no_speakers
    matched: list[str] = field(default_factory=list)  # distinct phrases heard (a presentation's extent)
    scorecard: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "status": self.status,
            "confidence": round(self.confidence, 3),
            "critical": self.critical,
            "score": round(self.score, 1),
            "quote": self.quote,
            "start": self.start,
            "end": self.end,
            "speaker": self.speaker,
            "note": self.note,
            "matched": self.matched,
            "scorecard": self.scorecard,
        }


GREETINGS = [
    "здравствуйте",
    "добрый день",
    "добрый вечер",
    "доброе утро",
    "приветствую вас",
    "hello",
    "good afternoon",
    "good morning",
    "good evening",
]
PRESENTATION = [
    "хотите попробовать",
    "попробуйте",
    "новинка",
    "новый вкус",
    "скидка",
    "по акции",
    "в составе",
    "натуральный",
    "would you like to try",
    "try our new",
    "discount",
    "it tastes of",
    "made from",
]
OFFER = [
    "возьмёте",
    "хотите купить",
    "давайте оформим",
    "будете брать",
    "отложить для вас",
    "положить вам",
    "сколько вам",
    "would you like to buy",
    "shall i put one aside",
    "will you take",
    "can i get you one",
]
GOODBYE = [
    "до свидания",
    "всего доброго",
    "хорошего дня",
    "всего хорошего",
    "спасибо за покупку",
    "приходите ещё",
    "goodbye",
    "have a nice day",
    "thank you for your purchase",
]


def default_criteria(products: Sequence[str] = ()) -> list[Criterion]:
    """Greeting at the opening, the product named (when the project gives its names), presented, the sale
    asked for, goodbye at the closing, and the customer's share of the talk (no customer talk: no contact)."""
    criteria = [Criterion(key="greeting", phrases=GREETINGS, where="opening", scorecard="greeting")]
    if products:
        criteria.append(
            Criterion(key="product_named", phrases=list(products), by_sound=True, scorecard="presentation")
        )
    criteria += [
        Criterion(key="presentation", phrases=PRESENTATION, scorecard="presentation"),
        Criterion(key="offer", phrases=OFFER, scorecard="offer"),
        Criterion(key="goodbye", phrases=GOODBYE, where="closing", scorecard="politeness"),
        Criterion(key="customer_share", kind="customer_share", critical=True, scorecard="real_customer"),
    ]
    return criteria


def rules_from(raw: dict[str, Any] | None, products: Sequence[str] = ()) -> ScriptRules:
    """A project's script as stored ({"criteria": [...], "done_score": ...}); empty: the defaults."""
    raw = dict(raw or {})
    if not raw.get("criteria"):
        raw["criteria"] = [c.model_dump() for c in default_criteria(products or raw.get("products", []))]
    raw.pop("products", None)
    return ScriptRules.model_validate(raw)


@functools.lru_cache(maxsize=1)
def _morph() -> Any:
    import pymorphy3  # noqa: PLC0415  pymorphy3: loads its dictionaries, optional

    return pymorphy3.MorphAnalyzer(lang="ru")


@functools.lru_cache(maxsize=65536)
def lemma(token: str) -> str:
    """A word's dictionary form: pymorphy3's likeliest parse for Russian; other scripts as they are."""
    token = token.lower().replace("ё", "е")
    if not CYRILLIC.search(token):
        return token
    return str(_morph().parse(token)[0].normal_form).replace("ё", "е")


@functools.lru_cache(maxsize=1)
def _metaphone() -> Any:
    from fonetika.metaphone import RussianMetaphone  # noqa: PLC0415  optional, as pymorphy3

    return RussianMetaphone()


@functools.lru_cache(maxsize=65536)
def sound(token: str) -> str:
    """A word's Russian Metaphone key (fonetika): vowels reduced, voiced consonants devoiced where Russian
    devoices them, doubled letters single; other scripts as they are."""
    token = token.lower().replace("ё", "е")
    if not CYRILLIC.search(token):
        return token
    return str(_metaphone().transform(token))


def tokens(text: str) -> list[str]:
    return [t.lower().replace("ё", "е") for t in TOKEN.findall(text) if t.strip("-_")]


@dataclass(frozen=True)
class _Phrase:
    text: str
    surface: str
    lemmas: str
    sound: str  # the words' sound keys run together (empty: too short to compare by sound)
    lemma_sound: str  # the same of their lemmas
    size: int


def _phrase(text: str, sound_min_length: int | None) -> _Phrase:
    """`sound_min_length`: None for a phrase never compared by sound."""
    words = tokens(text)
    lemmas = [lemma(w) for w in words]
    key = "".join(map(sound, words)) if sound_min_length is not None else ""
    long_enough = sound_min_length is not None and len(key) >= sound_min_length
    return _Phrase(
        text,
        " ".join(words),
        " ".join(lemmas),
        key if long_enough else "",
        "".join(map(sound, lemmas)) if long_enough else "",
        len(words),
    )


@dataclass(frozen=True)
class _Candidate:
    score: float
    phrase: str
    line: Line
    words: tuple[Word, ...]
    speaker_ok: bool
    place_ok: bool


def check_script(
    lines: Sequence[Line], rules: ScriptRules, voice_seconds: Mapping[str, float] | None = None
) -> list[Check]:
    """Every criterion of `rules` against the dialogue. `voice_seconds`: each role's seconds of speech as
    the diarisation heard them (services.speech.dialogue.voice_seconds), for the customer's share."""
    words = [w for line in lines for w in line.words]
    if words:
        first, last = words[0].start, words[-1].end
        edge = max(rules.edge_seconds, rules.edge_share * (last - first))
        opening_until, closing_from = first + edge, last - edge
    else:
        opening_until, closing_from = 0.0, 0.0
    diarised = any(line.speaker != UNKNOWN for line in lines)
    spans = _spans(lines)
    checks: list[Check] = []
    for criterion in rules.criteria:
        if criterion.kind == "customer_share":
            checks.append(_share_check(criterion, lines, diarised, voice_seconds))
            continue

        def place_ok(found: tuple[Word, ...], where: Where = criterion.where) -> bool:
            if where == "opening":
                return found[0].start <= opening_until
            if where == "closing":
                return found[-1].end >= closing_from
            return True

        candidates = [
            candidate
            for phrase in {
                p.lower(): _phrase(p, rules.sound_min_length if criterion.by_sound else None)
                for p in criterion.phrases
            }.values()
            if phrase.size
            for span in spans
            for candidate in _match(phrase, span, rules, speaker=criterion.speaker, place_ok=place_ok)
        ]
        checks.append(_phrase_check(criterion, candidates, rules, diarised))
    return checks


@dataclass(frozen=True)
class _Heard:
    """Per word of a line: its tokens as heard, their lemmas and their sound keys (a recognised "кофе,"
    is one word, "из-за" too)."""

    surface: list[list[str]]
    lemmas: list[list[str]]
    sounds: list[str]
    lemma_sounds: list[str]


def _prepared(line: Line) -> _Heard:
    surface = [tokens(w.text) for w in line.words]
    lemmas = [[lemma(t) for t in ts] for ts in surface]
    return _Heard(
        surface,
        lemmas,
        ["".join(map(sound, ts)) for ts in surface],
        ["".join(map(sound, ls)) for ls in lemmas],
    )


BORDER_WORDS = 5  # words each side of a turn's border that a phrase split across it can span


@dataclass(frozen=True)
class _Span:
    """Words searched together: one line, or the words either side of the border between two adjacent
    lines (`border`: the first word of the second), whose windows must then cross it. The recogniser's
    word times drift, and a phrase heard whole ("Будете | брать сегодня?") can be cut by a turn."""

    line: Line
    heard: _Heard
    speakers: tuple[str, ...]
    border: int | None = None


def _spans(lines: Sequence[Line]) -> list[_Span]:
    prepared = [_prepared(line) for line in lines]
    spans = [_Span(line, heard, (line.speaker,)) for line, heard in zip(lines, prepared, strict=True)]
    for (before, heard_before), (after, heard_after) in itertools.pairwise(zip(lines, prepared, strict=True)):
        tail, head = slice(-BORDER_WORDS, None), slice(0, BORDER_WORDS)
        words = before.words[tail] + after.words[head]
        if not before.words or not after.words:
            continue
        joined = Line(words[0].start, words[-1].end, before.speaker, words)
        heard = _Heard(
            *(
                getattr(heard_before, name)[tail] + getattr(heard_after, name)[head]
                for name in ("surface", "lemmas", "sounds", "lemma_sounds")
            )
        )
        spans.append(_Span(joined, heard, (before.speaker, after.speaker), len(before.words[tail])))
    return spans


def _score(phrase: _Phrase, heard_words: _Heard, start: int, stop: int, rules: ScriptRules) -> float | None:
    """The phrase against words[start:stop]: rapidfuzz's ratio on the words as heard or on their lemmas,
    whichever is closer; for a `by_sound` phrase, a sound-alike counts as the done bar. None: no words."""
    heard = " ".join(t for ts in heard_words.surface[start:stop] for t in ts)
    if not heard:
        return None
    as_lemmas = " ".join(t for ts in heard_words.lemmas[start:stop] for t in ts)
    score = max(fuzz.ratio(phrase.surface, heard), fuzz.ratio(phrase.lemmas, as_lemmas))
    if phrase.sound and score < rules.done_score:
        # Sounds alike: counts as done, scored at the bar (never more sure than a spelling match).
        alike = max(
            fuzz.ratio(phrase.sound, "".join(heard_words.sounds[start:stop])),
            fuzz.ratio(phrase.lemma_sound, "".join(heard_words.lemma_sounds[start:stop])),
        )
        if alike >= rules.sound_score:
            score = rules.done_score
    return score


def _crosses(span: _Span, start: int, stop: int, speaker: Speaker) -> bool:
    """A window of a border span counts when it crosses the border and, for a phrase with its speaker, at
    least half its words are that speaker's: "Будете | брать сегодня" is the promoter's, but "добрый день |
    да" is the customer's greeting with one word of the promoter's answer."""
    assert span.border is not None
    if not start < span.border < stop:
        return False
    if speaker == "any":
        return True
    before, after = span.border - start, stop - span.border
    theirs = (before if span.speakers[0] in (speaker, UNKNOWN) else 0) + (
        after if span.speakers[1] in (speaker, UNKNOWN) else 0
    )
    return 2 * theirs >= stop - start


def _match(
    phrase: _Phrase,
    span: _Span,
    rules: ScriptRules,
    *,
    speaker: Speaker,
    place_ok: Callable[[tuple[Word, ...]], bool],
) -> list[_Candidate]:
    """The best window of this span for the phrase (windows of the phrase's length, one word shorter
    and one longer: a word dropped or split by the recogniser). Across a border, the phrase's speaker
    must have said one side of it."""
    line, heard_words = span.line, span.heard
    speaker_ok = speaker == "any" or any(s in (speaker, UNKNOWN) for s in span.speakers)
    if span.border is not None and speaker in span.speakers:
        line = dataclasses.replace(line, speaker=speaker)  # the quote is theirs, spilling over the border
    best: _Candidate | None = None
    count = len(line.words)
    for size in {max(1, phrase.size - 1), phrase.size, phrase.size + 1}:
        for start in range(max(1, count - size + 1)):
            stop = min(count, start + size)
            if span.border is not None and not _crosses(span, start, stop, speaker):
                continue
            score = _score(phrase, heard_words, start, stop, rules)
            if score is None:
                continue
            if span.border is not None and score >= rules.done_score:
                # Found across the border only if neither side holds it alone: else it is that side's,
                # found (with its speaker) in that line ("можно вас | Здравствуйте" is the customer's).
                sides = (
                    _score(phrase, heard_words, start, span.border, rules),
                    _score(phrase, heard_words, span.border, stop, rules),
                )
                if any(side is not None and side >= rules.done_score for side in sides):
                    continue
            if best is None or score > best.score:
                found = line.words[start:stop]
                best = _Candidate(score, phrase.text, line, found, speaker_ok, place_ok(found))
    return [best] if best is not None else []


def _phrase_check(
    criterion: Criterion, candidates: list[_Candidate], rules: ScriptRules, diarised: bool
) -> Check:
    def rank(c: _Candidate) -> tuple[float, float]:
        return (c.score, -c.words[0].start)

    proper = [c for c in candidates if c.speaker_ok and c.place_ok]
    heard_elsewhere = [
        c for c in candidates if not (c.speaker_ok and c.place_ok) and c.score >= rules.done_score
    ]
    check = Check(criterion.key, "not_done", 0.0, critical=criterion.critical, scorecard=criterion.scorecard)
    best = max(proper, key=rank) if proper else None
    if best is not None and best.score >= rules.done_score:
        check.status = "done"
        check.confidence = 0.8 + 0.2 * (best.score - rules.done_score) / (100.0 - rules.done_score)
        check.matched = sorted({c.phrase for c in proper if c.score >= rules.done_score})
        if not diarised and criterion.speaker != "any":
            check.note = "no_speakers"  # said, but nobody can tell by whom
    elif heard_elsewhere:
        best = max(heard_elsewhere, key=rank)
        check.status = "unsure"
        check.confidence = 0.5
        check.note = "wrong_speaker" if not best.speaker_ok else "out_of_place"
    elif best is not None and best.score >= rules.unsure_score:
        check.status = "unsure"
        check.confidence = 0.5
        check.note = "weak_match"
    else:
        nearest = best.score if best is not None else 0.0
        # The further the nearest window is from "unsure", the surer the "not done"; an empty transcript
        # says nothing, which the verdict reads from the recogniser's confidence.
        check.confidence = 0.6 + 0.4 * min(1.0, max(0.0, rules.unsure_score - nearest) / 20.0)
        check.score = nearest
        return check
    check.score = best.score
    check.quote = best.line.text if len(best.line.words) <= 25 else " ".join(w.text for w in best.words)
    check.start, check.end, check.speaker = best.words[0].start, best.words[-1].end, best.line.speaker
    return check


def _share_check(
    criterion: Criterion, lines: Sequence[Line], diarised: bool, voice_seconds: Mapping[str, float] | None
) -> Check:
    """The customer's share of the talk: by the seconds the diarisation heard each voice speak where it ran
    (a quiet customer is heard as speech far more often than as words: on the 200-dialogue evaluation set
    Whisper base kept 28% of the customers' words, and the share by words missed a third of real
    customers, docs/benchmarks.md), else by the seconds of their recognised words."""
    check = Check(criterion.key, "unsure", 0.5, critical=criterion.critical, scorecard=criterion.scorecard)
    heard = {k: v for k, v in (voice_seconds or {}).items() if v > 0}
    seconds = heard if sum(heard.values()) > 0 else talk_seconds(lines)
    diarised = diarised or bool(heard)
    total = sum(seconds.values())
    if not diarised or total <= 0:
        check.note = "no_speakers"
        return check
    share = seconds.get("customer", 0.0) / total
    check.score = round(100 * share, 1)
    customer_lines = [line for line in lines if line.speaker == "customer"]
    if customer_lines:
        longest = max(customer_lines, key=lambda line: line.end - line.start)
        check.quote, check.start, check.end = longest.text, longest.start, longest.end
        check.speaker = "customer"
    if share >= criterion.min_share:
        check.status, check.confidence = "done", min(1.0, 0.8 + share)
    elif share < criterion.min_share / 2:
        check.status, check.confidence = "not_done", 0.6 + 0.4 * (1 - share / (criterion.min_share / 2))
    else:
        check.note = "weak_match"
    return check
