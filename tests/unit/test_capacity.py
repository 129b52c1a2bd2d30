"""The capacity arithmetic (services/capacity.capacity_of): measured minutes when reviews were written, the
recordings' length plus the documented overhead when none were, and the reviewer-hours of the queue."""

from __future__ import annotations

import pytest

from services.capacity import ESTIMATED, MEASURED, OVERHEAD_MINUTES, capacity_of


def test_measured_minutes_give_the_queue_its_hours() -> None:
    found = capacity_of(
        automatic=7,
        to_people=5,
        decided_by_people=3,
        waiting=12,
        median_review_minutes=4.5,
        reviews_measured=40,
        mean_recording_seconds=180.0,  # ignored: a measurement wins
    )
    assert (found.automatic, found.to_people, found.decided_by_people, found.waiting) == (7, 5, 3, 12)
    assert (found.minutes_source, found.reviews_measured, found.minutes_per_contact) == (MEASURED, 40, 4.5)
    assert found.queue_hours == pytest.approx(12 * 4.5 / 60)  # 0.9 h


def test_without_reviews_the_recordings_plus_overhead_are_the_estimate() -> None:
    found = capacity_of(
        automatic=0,
        to_people=0,
        decided_by_people=0,
        waiting=30,
        median_review_minutes=None,
        reviews_measured=0,
        mean_recording_seconds=150.0,
    )
    assert found.minutes_source == ESTIMATED and found.reviews_measured == 0
    assert found.minutes_per_contact == pytest.approx(2.5 + OVERHEAD_MINUTES)
    assert found.queue_hours == pytest.approx(30 * (2.5 + OVERHEAD_MINUTES) / 60)


def test_an_empty_queue_needs_no_hours_and_no_recording_means_the_overhead_alone() -> None:
    empty = capacity_of(
        automatic=3,
        to_people=0,
        decided_by_people=0,
        waiting=0,
        median_review_minutes=None,
        reviews_measured=0,
        mean_recording_seconds=None,
    )
    assert empty.minutes_per_contact == OVERHEAD_MINUTES and empty.queue_hours == 0.0
    # A median with no reviews behind it is not a measurement.
    assert (
        capacity_of(
            automatic=0,
            to_people=0,
            decided_by_people=0,
            waiting=1,
            median_review_minutes=9.0,
            reviews_measured=0,
            mean_recording_seconds=60.0,
        ).minutes_source
        == ESTIMATED
    )
