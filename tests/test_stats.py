"""The studies' statistics: t quantiles and seed counts against published tables, paired vs Welch intervals,
and the edges of the three-way verdict rule."""
import math
import statistics

import pytest

from ssnas.studies.stats import (HELD, INCONCLUSIVE, NOT_HELD, Interval, at_least, by_seed, claim, combine,
                                 difference, directional, mean_interval, pooled_std, seeds_needed, shift,
                                 t_quantile, verdict_text, within)


@pytest.mark.parametrize("df, value", [(1, 12.706), (2, 4.303), (4, 2.776), (10, 2.228), (30, 2.042)])
def test_t_quantile_matches_the_table(df, value):
    assert t_quantile(0.975, df) == pytest.approx(value, abs=1e-3)


def test_seeds_needed_matches_textbook_sample_sizes():
    # Cohen's d = 1 and 0.5, two-sided 5 %, power 80 %: 17 and 64 per group (exact t; G*Power gives the same)
    assert seeds_needed(1.0, 1.0, paired=False) == 17
    assert seeds_needed(0.5, 1.0, paired=False) == 64
    # paired, standardized effect of the differences d_z = 1: 10 pairs
    assert seeds_needed(1.0, 1 / math.sqrt(2), paired=True) == 10
    # correlated seeds make pairing pay: the differences' std shrinks by sqrt(2 (1 - r))
    assert seeds_needed(1.0, 1.0, correlation=0.75) < seeds_needed(1.0, 1.0, paired=False)
    # a bigger effect or a smaller std needs fewer seeds
    assert seeds_needed(2.0, 1.0) < seeds_needed(1.0, 1.0) < seeds_needed(1.0, 2.0)
    # a huge effect: 3 pairs suffice (scipy's nct.cdf is nan this far in the tail; it must not matter)
    assert seeds_needed(0.0462, 0.005) == 3
    assert [seeds_needed(0.0462, sd) for sd in (0.005, 0.01, 0.02, 0.04)] == sorted(
        seeds_needed(0.0462, sd) for sd in (0.005, 0.01, 0.02, 0.04))
    with pytest.raises(ValueError):
        seeds_needed(0.0, 1.0)


def test_mean_interval_by_hand():
    iv = mean_interval([1.0, 2.0, 3.0])
    half = 4.303 * 1.0 / math.sqrt(3)
    assert (iv.mean, iv.n, iv.method) == (2.0, 3, "one-sample")
    assert iv.low == pytest.approx(2 - half, abs=1e-3) and iv.high == pytest.approx(2 + half, abs=1e-3)
    one = mean_interval([0.5])
    assert one.mean == 0.5 and (one.low, one.high) == (-math.inf, math.inf)


def test_paired_interval_when_seeds_are_shared_welch_otherwise():
    a = {0: 0.70, 1: 0.72, 2: 0.68}
    b = {0: 0.68, 1: 0.705, 2: 0.66}          # the same seeds, each 1.5-2 points below a
    paired = difference(a, b)
    assert paired.method == "paired" and paired.mean == pytest.approx(0.018333, abs=1e-6)
    d = [0.02, 0.015, 0.02]
    half = 4.303 * (sum((x - sum(d) / 3) ** 2 for x in d) / 2) ** 0.5 / math.sqrt(3)
    assert paired.low == pytest.approx(paired.mean - half, abs=1e-5) and paired.low > 0
    welch = difference(a, {5: 0.68, 6: 0.705, 7: 0.66})   # the same values on other seeds
    assert welch.method == "welch" and welch.mean == pytest.approx(paired.mean)
    assert welch.low < 0 < welch.high          # the seed-to-seed spread swamps it without the pairing
    # Welch by hand: variances over n, Welch-Satterthwaite degrees of freedom
    qa, qb = statistics.variance(a.values()) / 3, statistics.variance([0.68, 0.705, 0.66]) / 3
    df = (qa + qb) ** 2 / (qa ** 2 / 2 + qb ** 2 / 2)
    assert 3.9 < df < 4   # nearly equal variances: close to 2n - 2 = 4
    assert welch.high - welch.mean == pytest.approx(t_quantile(0.975, df) * math.sqrt(qa + qb))


def test_one_seed_or_constant_values():
    single = difference({0: 0.7}, {0: 0.6})
    assert (single.low, single.high) == (-math.inf, math.inf)
    assert directional(single, +1, 0.1) == INCONCLUSIVE
    assert verdict_text(INCONCLUSIVE, single) == "**inconclusive** (CI [−∞, +∞])"
    assert single.text(100, " points") == "+10.0 points (no CI: 1 seed)"
    same = difference({0: 0.5, 1: 0.5}, {0: 0.5, 1: 0.5})      # identical: a zero-width interval at 0
    assert (same.low, same.high) == (0.0, 0.0)
    assert directional(same, +1) == INCONCLUSIVE              # excludes neither side of 0
    assert directional(same, +1, effect=0.02) == NOT_HELD     # but rules out half the paper's effect
    assert difference({}, {0: 1.0}).n == 0


@pytest.mark.parametrize("low, high, side, effect, word", [
    (0.01, 0.05, +1, None, HELD),          # excludes 0 on the paper's side
    (-0.05, -0.01, +1, None, NOT_HELD),    # excludes 0 on the other side
    (-0.05, 0.01, +1, None, INCONCLUSIVE),
    (-0.01, 0.009, +1, 0.02, NOT_HELD),    # upper bound below half the paper's 0.02
    (-0.01, 0.011, +1, 0.02, INCONCLUSIVE),
    (-0.05, -0.01, -1, None, HELD),        # the paper's side is negative
    (-0.009, 0.01, -1, 0.02, NOT_HELD),
    (0.0, 0.05, +1, None, INCONCLUSIVE),   # touching 0 is not excluding it
    (0.001, 0.005, +1, 0.02, HELD),        # held in sign, though smaller than the paper's effect
])
def test_directional_rule(low, high, side, effect, word):
    assert directional(Interval((low + high) / 2, low, high, 3, "paired"), side, effect) == word


def test_claim_text_prints_the_difference_with_its_interval():
    word, text = claim(Interval(0.003, 0.001, 0.005, 3, "paired"), +1, 0.02, scale=100, unit=" points")
    assert word == HELD and "+0.3 points (95% CI [+0.1, +0.5], paired, 3 seeds)" in text
    assert "smaller than the paper's" in text
    word, text = claim(Interval(0.01, -0.02, 0.04, 2, "welch"), +1, None, scale=100, unit=" points")
    assert word == INCONCLUSIVE and text.endswith("**inconclusive** (CI [-2.0, +4.0] points)")


def test_non_inferiority_equivalence_and_combination():
    assert at_least(Interval(0, -0.01, 0.01, 3, "paired"), 0.02) == HELD
    assert at_least(Interval(-0.04, -0.05, -0.03, 3, "paired"), 0.02) == NOT_HELD
    assert at_least(Interval(-0.02, -0.03, -0.01, 3, "paired"), 0.02) == INCONCLUSIVE
    assert within(Interval(0, -0.01, 0.01, 3, "one-sample"), 0.05) == HELD
    assert within(Interval(0.1, 0.06, 0.2, 3, "one-sample"), 0.05) == NOT_HELD
    assert within(Interval(0.05, 0.0, 0.1, 3, "one-sample"), 0.05) == INCONCLUSIVE
    assert combine([HELD, HELD]) == HELD and combine([HELD, INCONCLUSIVE]) == INCONCLUSIVE
    assert combine([INCONCLUSIVE, NOT_HELD, HELD]) == NOT_HELD and combine([]) == INCONCLUSIVE
    assert shift(Interval(2, 1, 3, 3, "one-sample"), 1).low == 0


def test_pooled_std_and_by_seed():
    assert pooled_std([[1.0, 3.0], [5.0, 7.0, 9.0]]) == pytest.approx(math.sqrt((2 + 2 * 4) / 3))
    assert math.isnan(pooled_std([[1.0], [2.0]]))
    rows = [{"seed": 0, "row": "a", "miou": 0.5}, {"seed": 1, "row": "a", "miou": 0.6},
            {"seed": 0, "row": "b", "miou": 0.4}]
    assert by_seed(rows, "miou", row="a") == {0: 0.5, 1: 0.6}
