"""The feedback report's review score: the Wilson lower bound against known values."""
from __future__ import annotations

import pytest

from cds_service.feedback_report import wilson_lower_bound


@pytest.mark.parametrize(("successes", "n", "bound"), [(80, 100, 0.7112), (3, 3, 0.4385), (1, 1, 0.2065),
                                                       (0, 10, 0.0), (0, 0, 0.0), (50, 100, 0.4038)])
def test_the_wilson_lower_bound_of_known_proportions(successes, n, bound):
    assert round(wilson_lower_bound(successes, n), 4) == bound


def test_more_evidence_at_the_same_rate_raises_the_bound():
    assert wilson_lower_bound(3, 3) < wilson_lower_bound(8, 10) < wilson_lower_bound(80, 100) < 0.8
