"""Calibrated probabilities for the self-recording judgement, per backend.

A logistic model over features the diariser measures inside one recording (how well its speech splits in
two, how much the second part speaks, how each part scores against the promoter's enrolment) gives the
probability that no genuine customer speaks. It is fitted on the field-realistic evaluation set
(`fieldcheck voice eval --dialogues … --fit`, bench/field_eval.py) and may be refitted per project from its
own reviewed contacts (`fieldcheck voice eval --from-reviews`). The packaged fits live beside this file as
`calibration_<backend>.json`; a backend without one is "uncalibrated" and its flags never go past
"listen carefully".
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).parent
# The two models: one for recordings of a promoter without an enrolment, one that also uses the enrolment.
ONE_VOICE_FEATURES = ("gap_z", "silhouette", "minor_log_seconds", "minor_share", "between", "coherence")
ENROL_FEATURES = ("enrol_promoter", "enrol_customer", "enrol_margin")
SELF_FEATURES = (*ONE_VOICE_FEATURES, *ENROL_FEATURES)
# The overlap-aware diarisation's evidence (services.voice.diarisation): the forced two-way split of the local
# speakers, and how the two sides share the floor.
SEGMENTED_ONE_VOICE_FEATURES = (
    "link",
    "minor_log_seconds",
    "minor_share",
    "coexist",
    "overlap_share",
    "locals_per_chunk",
    "minor_alone",
    "turn_rate",
)
SEGMENTED_SELF_FEATURES = (*SEGMENTED_ONE_VOICE_FEATURES, *ENROL_FEATURES)


def features_for(evidence: dict[str, float]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The (one voice, self-recorded) feature sets of whichever analysis measured this evidence."""
    if "link" in evidence:
        return SEGMENTED_ONE_VOICE_FEATURES, SEGMENTED_SELF_FEATURES
    return ONE_VOICE_FEATURES, SELF_FEATURES


@dataclass
class Logistic:
    features: tuple[str, ...]
    mean: list[float]
    scale: list[float]
    coef: list[float]
    intercept: float

    def probability(self, evidence: dict[str, float]) -> float:
        x = np.array([evidence.get(name, 0.0) for name in self.features], dtype=np.float64)
        z = float(((x - np.array(self.mean)) / np.array(self.scale)) @ np.array(self.coef)) + self.intercept
        return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))

    def to_json(self) -> dict[str, Any]:
        return {
            "features": list(self.features),
            "mean": self.mean,
            "scale": self.scale,
            "coef": self.coef,
            "intercept": self.intercept,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Logistic:
        return cls(
            tuple(data["features"]),
            [float(v) for v in data["mean"]],
            [float(v) for v in data["scale"]],
            [float(v) for v in data["coef"]],
            float(data["intercept"]),
        )

    @classmethod
    def fit(cls, features: tuple[str, ...], rows: list[dict[str, float]], labels: list[int]) -> Logistic:
        """Standardised features, L2-regularised logistic regression (scikit-learn)."""
        from sklearn.linear_model import LogisticRegression  # noqa: PLC0415  scikit-learn: heavy, only when fitting

        x = np.array([[row.get(name, 0.0) for name in features] for row in rows], dtype=np.float64)
        mean, scale = x.mean(axis=0), x.std(axis=0)
        scale[scale == 0] = 1.0
        model = LogisticRegression(C=1.0, max_iter=1000).fit((x - mean) / scale, np.array(labels))
        return cls(
            features,
            [float(v) for v in mean],
            [float(v) for v in scale],
            [float(v) for v in model.coef_[0]],
            float(model.intercept_[0]),
        )


@dataclass
class Calibration:
    """P(one voice) from the recording alone, and P(no genuine customer) with the enrolment."""

    backend: str
    one_voice: Logistic
    self_recorded: Logistic
    source: str = ""  # what it was fitted on, shown by `voice thresholds`
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "source": self.source,
            "one_voice": self.one_voice.to_json(),
            "self_recorded": self.self_recorded.to_json(),
            **self.extra,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Calibration:
        known = {"backend", "source", "one_voice", "self_recorded"}
        return cls(
            str(data["backend"]),
            Logistic.from_json(data["one_voice"]),
            Logistic.from_json(data["self_recorded"]),
            str(data.get("source", "")),
            {k: v for k, v in data.items() if k not in known},
        )


def packaged_path(backend: str) -> Path:
    return HERE / f"calibration_{backend}.json"


@functools.cache
def packaged(backend: str) -> Calibration | None:
    """The shipped fit for a backend (read once per process), or None."""
    path = packaged_path(backend)
    if not path.is_file():
        return None
    return Calibration.from_json(json.loads(path.read_text()))


def for_project(backend: str, project_settings: dict[str, Any] | None) -> Calibration | None:
    """A project's own refit (from its reviews) wins over the packaged one."""
    own = ((project_settings or {}).get(backend) or {}).get("calibration")
    if own:
        return Calibration.from_json(own)
    return packaged(backend)
