"""The feedback report's arithmetic: the Wilson lower bound against known values, and days folded into Monday weeks
and calendar months (UTC)."""
from __future__ import annotations

from datetime import date

import pytest

from cds_service.feedback_report import epoch, period_of, wilson_lower_bound


@pytest.mark.parametrize(("successes", "n", "bound"), [(80, 100, 0.7112), (3, 3, 0.4385), (1, 1, 0.2065),
                                                       (0, 10, 0.0), (0, 0, 0.0), (50, 100, 0.4038)])
def test_the_wilson_lower_bound_of_known_proportions(successes, n, bound):
    assert round(wilson_lower_bound(successes, n), 4) == bound


def test_more_evidence_at_the_same_rate_raises_the_bound():
    assert wilson_lower_bound(3, 3) < wilson_lower_bound(8, 10) < wilson_lower_bound(80, 100) < 0.8


def days(day: date) -> int:
    return epoch(day) // 86_400


@pytest.mark.parametrize(("day", "week", "month"), [
    (date(2027, 1, 11), "2027-01-11", "2027-01"),  # a Monday is its own week
    (date(2027, 1, 17), "2027-01-11", "2027-01"),  # Sunday belongs to the Monday before
    (date(2027, 2, 1), "2027-02-01", "2027-02"),
    (date(2026, 12, 31), "2026-12-28", "2026-12"),  # a week across the new year is named by its Monday
])
def test_days_fold_into_monday_weeks_and_months(day, week, month):
    assert period_of(days(day), "week") == week
    assert period_of(days(day), "month") == month
