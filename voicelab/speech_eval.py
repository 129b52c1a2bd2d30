"""An evaluation set of Russian promoter-customer dialogues with known script content (issue #25), and the
measures the speech pipeline is judged by: WER, the script checks' precision and recall, the verdicts'
agreement with the ground truth.

Each dialogue is planned from (seed, index) alone, so the set is the same on every machine: a promoter
profile (diligent, sloppy, careless: how likely each script item is said), which items the promoter says
(each in one of three wordings that contain one of the default criteria's phrases, in other words around
it), off-script filler lines, the customer's answers, and whether the customer speaks at all (a contact
without a customer is the fraud the critical `customer_share` criterion catches). Rendering speaks the
promoter's lines in Debian's festvox-ru voice (the only natural-sounding offline Russian voice; one man,
varied only by a small pitch shift) and the customer's in espeak-ng's Russian variants (variant, speed,
pitch varied), puts both in one simulated shop (voicelab.fieldsim: room impulse responses, shop noise, one
phone's band limits, Opus), and keeps what was said, in order, as the reference transcript.

The ground-truth verdict mirrors services.speech.verdict.decide on the true checks: a critical item missing
is a rejection; otherwise the share of the other items done decides (approve at `approve_share` or more,
reject at `reject_share` or less, and in between "partial", which the rules send to a person; the default
rules have one pass mark, so no contact is partial unless a band is given).
"""

from __future__ import annotations

import functools
import random
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from services.speech.script import Criterion
from services.speech.verdict import VerdictRules
from voicelab import fieldsim

SAMPLE_RATE = fieldsim.SAMPLE_RATE
PRODUCTS = ("Золотая арабика",)  # the project's product name, the `product_named` criterion's phrase

# Every wording contains one of the default criteria's phrases (services.speech.script) and none of another
# criterion's: the ground truth is what the promoter said, the criteria are what the project asks for.
ITEMS: dict[str, tuple[str, ...]] = {
    "greeting": (
        "Здравствуйте!",
        "Добрый день! Можно вас на минутку?",
        "Добрый вечер, приветствую вас!",
    ),
    "product_named": (
        "Это наш кофе Золотая арабика.",
        "Хочу рассказать вам про Золотую арабику.",
        "Вот, Золотая арабика, в зёрнах и молотая.",
    ),
    "presentation": (
        "Хотите попробовать? Он обжарен небольшими партиями, у него вкус шоколада и орехов.",
        "Это новинка, в составе только отборные зёрна из Бразилии.",
        "Сегодня на него скидка, по акции он дешевле обычного.",
    ),
    "offer": (
        "Возьмёте одну пачку?",
        "Будете брать сегодня?",
        "Давайте оформим вам одну пачку?",
    ),
    "goodbye": (
        "Спасибо за покупку, до свидания!",
        "Всего доброго!",
        "Хорошего дня, приходите ещё!",
    ),
}
SCRIPT_ITEMS = tuple(ITEMS)
OPENERS = ("Девушка, подойдите, пожалуйста.", "Мужчина, минуточку.", "Извините, можно вас?")
CLOSERS = ("Ну ладно, спасибо.", "Хорошо, понятно.", "Ну как хотите.")
FILLERS = (
    "Меня зовут Анна, я из компании Кофейня.",
    "Сегодня в магазине очень много людей.",
    "Посмотрите, какая красивая упаковка.",
    "Его можно заваривать в турке или прямо в чашке.",
    "Мы работаем здесь каждую субботу.",
    "Он подходит и для кофемашины.",
)
CUSTOMER_LINES = (
    "Да, слушаю.",
    "Интересно.",
    "А сколько это стоит?",
    "Угу.",
    "А он крепкий?",
    "Я обычно пью чай.",
    "Понятно, спасибо.",
    "Нет, у меня дома ещё есть.",
    "А где он продаётся?",
    "Ну, не знаю.",
)
CUSTOMER_FIRST = ("Да?", "Здравствуйте.", "Слушаю вас.")
CUSTOMER_YES = ("Да, давайте одну.", "Хорошо, возьму.", "Нет, спасибо, в другой раз.")
CUSTOMER_BYE = ("Спасибо, до свидания.", "Всего хорошего.", "Пока.")
ENROLMENT_TEXT = (
    "Меня зовут Анна. Я работаю промоутером в сети магазинов и каждый день рассказываю покупателям о нашем "
    "кофе. Это запись моего голоса для проверки."
)

# Profiles: (name, weight, probability that each script item is said)
PROFILES = (("diligent", 0.5, 0.92), ("sloppy", 0.3, 0.55), ("careless", 0.2, 0.15))
NO_CUSTOMER = 0.1  # contacts where the customer says (almost) nothing
CUSTOMER_VOICES = (
    "ru",
    "ru+f1",
    "ru+f2",
    "ru+f3",
    "ru+f4",
    "ru+m1",
    "ru+m2",
    "ru+m3",
    "ru+m4",
    "ru+m5",
    "ru+m6",
    "ru+m7",
)

TruthVerdict = Literal["approve", "reject", "partial"]


@dataclass(frozen=True)
class Utterance:
    speaker: Literal["promoter", "customer"]
    text: str
    item: str | None = None  # the script item this line says, if any


@dataclass
class Plan:
    """One dialogue as decided before any audio: what is said, by whom, in which voice and conditions."""

    seed: int
    index: int
    profile: str
    said: dict[str, bool]
    utterances: list[Utterance]
    promoter_semitones: float
    customer_voice: str
    customer_speed: int
    customer_pitch: int
    level_gap_db: float
    snr_db: float
    phone: str
    bitrate_kbps: int
    room: int
    silent_customer: bool
    gaps: list[float] = field(default_factory=list)  # the pause before each utterance, seconds

    def reference(self) -> str:
        """What was said, in order: the reference transcript for the WER."""
        return " ".join(u.text for u in self.utterances)

    def meta(self) -> dict[str, Any]:
        data = asdict(self)
        data["utterances"] = [asdict(u) for u in self.utterances]
        return data


def plan(seed: int, index: int, rooms: int = 8) -> Plan:
    """The `index`-th dialogue of set `seed`: a pure function of both."""
    rng = random.Random(f"speech-eval-{seed}-{index}")
    profile, _, chance = rng.choices(PROFILES, weights=[w for _, w, _ in PROFILES])[0]
    said = {key: rng.random() < chance for key in SCRIPT_ITEMS}
    silent = rng.random() < NO_CUSTOMER
    promoter: list[Utterance] = [
        Utterance("promoter", rng.choice(ITEMS["greeting"]), "greeting")
        if said["greeting"]
        else Utterance("promoter", rng.choice(OPENERS))
    ]
    fillers = rng.sample(FILLERS, rng.randint(1, 3))
    middle = [
        Utterance("promoter", rng.choice(ITEMS[k]), k) for k in ("product_named", "presentation") if said[k]
    ]
    middle += [Utterance("promoter", text) for text in fillers]
    rng.shuffle(middle)
    promoter += middle
    if said["offer"]:
        promoter.append(Utterance("promoter", rng.choice(ITEMS["offer"]), "offer"))
    promoter.append(
        Utterance("promoter", rng.choice(ITEMS["goodbye"]), "goodbye")
        if said["goodbye"]
        else Utterance("promoter", rng.choice(CLOSERS))
    )
    utterances: list[Utterance] = []
    answers = rng.sample(CUSTOMER_LINES, len(CUSTOMER_LINES))
    murmur = rng.randrange(len(promoter) - 1) if silent and rng.random() < 0.5 else -1
    for position, line in enumerate(promoter):
        utterances.append(line)
        if silent:
            if position == murmur:
                utterances.append(Utterance("customer", "Угу."))
            continue
        if position == len(promoter) - 1:
            if rng.random() < 0.6:
                utterances.append(Utterance("customer", rng.choice(CUSTOMER_BYE)))
        elif position == 0:
            utterances.append(Utterance("customer", rng.choice(CUSTOMER_FIRST)))
        elif line.item == "offer":
            utterances.append(Utterance("customer", rng.choice(CUSTOMER_YES)))
        elif rng.random() < 0.85:
            utterances.append(Utterance("customer", answers.pop()))
    return Plan(
        seed=seed,
        index=index,
        profile=profile,
        said=said,
        utterances=utterances,
        promoter_semitones=round(rng.uniform(-2.0, 2.0), 2),
        customer_voice=rng.choice(CUSTOMER_VOICES),
        customer_speed=rng.randint(110, 150),
        customer_pitch=rng.randint(35, 75),
        level_gap_db=round(rng.uniform(3.0, 10.0), 1),
        snr_db=round(rng.uniform(8.0, 24.0), 1),
        phone=rng.choice(sorted(fieldsim.PHONES)),
        bitrate_kbps=rng.choice((16, 24, 32)),
        room=rng.randrange(rooms),
        silent_customer=silent,
        gaps=[round(rng.uniform(0.25, 0.7), 2) for _ in utterances],
    )


def truth_checks(plan: Plan, customer_share: float, criteria: Sequence[Criterion]) -> dict[str, bool]:
    """Per criterion: done in truth. Phrase criteria: the promoter said the item; `customer_share`: the
    customer's share of the talk (seconds of speech, measured on the synthesised lines) reaches its minimum."""
    truth: dict[str, bool] = {}
    for criterion in criteria:
        if criterion.kind == "customer_share":
            truth[criterion.key] = customer_share >= criterion.min_share
        else:
            truth[criterion.key] = bool(plan.said.get(criterion.key, False))
    return truth


def truth_verdict(
    truth: dict[str, bool], criteria: Sequence[Criterion], rules: VerdictRules | None = None
) -> TruthVerdict:
    """services.speech.verdict.decide's rules on the true checks (no flags, perfect recognition)."""
    rules = rules or VerdictRules()
    critical = [c.key for c in criteria if c.critical]
    others = [c.key for c in criteria if not c.critical]
    if any(not truth[key] for key in critical):
        return "reject"
    share = sum(truth[key] for key in others) / len(others) if others else 1.0
    if share <= rules.reject_share:
        return "reject"
    return "approve" if share >= rules.approve_share else "partial"


WORD = re.compile(r"\w+", re.UNICODE)


def words(text: str) -> list[str]:
    """Lower-cased words without punctuation, ё as е (Whisper writes either)."""
    return WORD.findall(text.lower().replace("ё", "е"))


def edit_distance(reference: Sequence[str], hypothesis: Sequence[str]) -> int:
    """Word-level Levenshtein distance: substitutions + deletions + insertions."""
    previous = list(range(len(hypothesis) + 1))
    for i, ref in enumerate(reference, 1):
        current = [i] + [0] * len(hypothesis)
        for j, hyp in enumerate(hypothesis, 1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref != hyp))
        previous = current
    return previous[-1]


def aligned_hits(reference: Sequence[str], hypothesis: Sequence[str]) -> list[bool]:
    """Per reference word: whether a minimal alignment with the hypothesis keeps it as heard (not
    substituted nor deleted), to tell whose words the recogniser lost."""
    rows, cols = len(reference), len(hypothesis)
    cost = np.zeros((rows + 1, cols + 1), dtype=np.int64)
    cost[:, 0] = np.arange(rows + 1)
    cost[0, :] = np.arange(cols + 1)
    for i in range(1, rows + 1):
        for j in range(1, cols + 1):
            same = reference[i - 1] == hypothesis[j - 1]
            cost[i, j] = min(cost[i - 1, j] + 1, cost[i, j - 1] + 1, cost[i - 1, j - 1] + (not same))
    hits = [False] * rows
    i, j = rows, cols
    while i > 0 and j > 0:
        same = reference[i - 1] == hypothesis[j - 1]
        if cost[i, j] == cost[i - 1, j - 1] + (not same):
            hits[i - 1] = same
            i, j = i - 1, j - 1
        elif cost[i, j] == cost[i - 1, j] + 1:
            i -= 1
        else:
            j -= 1
    return hits


def wer(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus WER: all word errors over all reference words."""
    errors = total = 0
    for reference, hypothesis in zip(references, hypotheses, strict=True):
        ref = words(reference)
        errors += edit_distance(ref, words(hypothesis))
        total += len(ref)
    return errors / total if total else 0.0


def wilson(hits: int, total: int, z: float = 1.96) -> tuple[float, float] | None:
    """The 95% Wilson interval of a proportion."""
    if total == 0:
        return None
    p = hits / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * np.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return round(float(centre - half), 4), round(float(centre + half), 4)


# --- rendering: needs festvox-ru, espeak-ng, ffmpeg, scipy, audiomentations, pyroomacoustics ---


@functools.lru_cache(maxsize=256)
def _festival(text: str) -> np.ndarray:
    from sandbox.demo_audio import _festival_wav  # noqa: PLC0415  sandbox: synthesis only

    return _festival_wav(text)


def _level(wav: np.ndarray) -> np.ndarray:
    trimmed = fieldsim.trim(wav)
    wav = trimmed if len(trimmed) else wav
    return np.asarray(wav * (0.1 / (float(np.sqrt(np.mean(wav**2))) + 1e-9)), dtype=np.float32)


def _line(plan: Plan, utterance: Utterance) -> np.ndarray:
    from sandbox.demo_audio import _voice_wav  # noqa: PLC0415  sandbox: synthesis only

    if utterance.speaker == "promoter":
        wav = _festival(utterance.text)
        if plan.promoter_semitones:
            wav = fieldsim.pitch_shift(wav, plan.promoter_semitones)
    else:
        wav = _voice_wav(utterance.text, plan.customer_voice, plan.customer_speed, plan.customer_pitch)
    return _level(wav)


@dataclass
class Rendered:
    opus: bytes  # the voice note as Telegram delivers it
    enrolment: bytes  # the promoter's enrolment note (their voice, quieter place)
    duration: float
    customer_share: float  # the customer's share of the speech seconds
    turns: list[tuple[float, float, str]]


def render(plan: Plan, rooms: fieldsim.Rooms, babble: list[np.ndarray]) -> Rendered:
    """The dialogue as one phone in one shop records it (the mixing of fieldsim.simulate, turns in order
    without overlap) and the promoter's enrolment note."""
    rng = random.Random(f"speech-eval-audio-{plan.seed}-{plan.index}")
    pieces = [(u.speaker, _line(plan, u)) for u in plan.utterances]
    length = int((sum(len(w) for _, w in pieces) / SAMPLE_RATE + sum(plan.gaps) + 1.0) * SAMPLE_RATE)
    tracks = {"promoter": np.zeros(length, np.float32), "customer": np.zeros(length, np.float32)}
    at = 0
    turns: list[tuple[float, float, str]] = []
    seconds = {"promoter": 0.0, "customer": 0.0}
    for (speaker, wav), gap in zip(pieces, plan.gaps, strict=True):
        at += int(gap * SAMPLE_RATE)
        tracks[speaker][at : at + len(wav)] = wav
        turns.append((round(at / SAMPLE_RATE, 2), round((at + len(wav)) / SAMPLE_RATE, 2), speaker))
        seconds[speaker] += len(wav) / SAMPLE_RATE
        at += len(wav)
    used = at + SAMPLE_RATE // 2
    room = rooms.rooms[plan.room]
    promoter = fieldsim._convolve(tracks["promoter"][:used], room["rirs"][0])
    mix = promoter / (fieldsim._active_rms(promoter) + 1e-9)
    if seconds["customer"]:
        customer = fieldsim._convolve(tracks["customer"][:used], room["rirs"][1])
        mix = mix + customer / (fieldsim._active_rms(customer) + 1e-9) * 10 ** (-plan.level_gap_db / 20)
    noise = fieldsim.shop_noise(rng, used, babble, room)
    mix = mix + noise * (fieldsim._active_rms(mix) / (fieldsim._rms(noise) + 1e-9)) * 10 ** (
        -plan.snr_db / 20
    )
    mix = fieldsim.phone_channel(mix, plan.phone)
    mix = mix / (np.abs(mix).max() + 1e-9) * rng.uniform(0.3, 0.9)  # the phone's automatic gain
    opus = fieldsim.opus_bytes(mix, plan.bitrate_kbps)
    enrolment = _festival(ENROLMENT_TEXT)
    if plan.promoter_semitones:
        enrolment = fieldsim.pitch_shift(enrolment, plan.promoter_semitones)
    enrolment_opus = fieldsim.opus_bytes(fieldsim.enrolment(rng, _level(enrolment)), 32)
    total = seconds["promoter"] + seconds["customer"]
    return Rendered(
        opus=opus,
        enrolment=enrolment_opus,
        duration=used / SAMPLE_RATE,
        customer_share=seconds["customer"] / total if total else 0.0,
        turns=turns,
    )
