"""Confidence intervals, three-way verdicts and seed counts for the studies' claims.

The rules below were fixed in code before any study result at the calibrated scale was seen; every
study's verdict goes through them, so a reader can check one place for what "held" means.

- A difference between two settings gets a 95 % t-interval: **paired by seed** (on the per-seed
  differences) when both settings ran exactly the same seeds, since shared seeds share data order and
  initialization; **Welch** (unequal variances) otherwise. One seed per setting gives no interval
  (``[-inf, +inf]``): such a claim is always inconclusive.
- A directional claim ("A beats B", the paper's side = the sign of the effect it reports) is
  **held** when the interval excludes 0 on the paper's side; **did not hold** when it excludes 0 on the
  other side, or when it excludes an effect ``SIZE_FRACTION`` (half) of the paper's size (its bound on the
  paper's side lies below half the paper's effect, scaled to our baseline by the paper's relative effect);
  **inconclusive** otherwise. Where the paper gives no size (a figure's shape), only the sign counts.
  A held effect whose interval also lies below half the paper's size is reported as held, with that note.
- An "at least as good" claim (non-inferiority) is **held** when the interval's lower bound lies above
  ``-margin``, **did not hold** when its upper bound lies below ``-margin``, inconclusive otherwise.
- A "stays constant" claim (equivalence within ``±tol``) is **held** when the interval lies inside
  ``(-tol, tol)``, **did not hold** when it lies wholly outside it, inconclusive otherwise.
- A claim made of several parts holds when every part held, did not hold when any part did not hold,
  and is inconclusive otherwise.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

LEVEL = 0.95            # two-sided confidence of every interval
POWER = 0.80            # the chance to detect an effect that ``seeds_needed`` plans for
SIZE_FRACTION = 0.5     # "did not hold" also when the interval rules out half the paper's effect
MARGIN = 0.02           # "at least as good": a loss of at most 2 % of the reference (≈ 1.4 points at 70 %
                        # mIoU, about the paper's own seed-to-seed std in Table 2, half its 2.8-point effect)

HELD, NOT_HELD, INCONCLUSIVE = "held", "did not hold", "inconclusive"


def _number(x: float, scale: float, digits: int) -> str:
    if math.isnan(x):
        return "n/a"
    return "−∞" if x == -math.inf else "+∞" if x == math.inf else f"{scale * x:+.{digits}f}"


@dataclass(frozen=True)
class Interval:
    """A mean (of one sample, or of a difference) with its confidence interval."""
    mean: float
    low: float
    high: float
    n: int           # seeds (pairs, for a paired interval; the smaller sample for Welch)
    method: str      # "paired", "welch", "one-sample"

    def text(self, scale: float = 1.0, unit: str = "", digits: int = 1) -> str:
        """``+1.2 points (95% CI [-0.3, +2.7], paired, 3 seeds)``."""
        def f(x):
            return _number(x, scale, digits)
        seeds = f"{self.n} seed{'s' if self.n != 1 else ''}"
        if self.low == -math.inf and self.high == math.inf:
            return f"{f(self.mean)}{unit} (no CI: {seeds})"
        return f"{f(self.mean)}{unit} ({100 * LEVEL:.0f}% CI [{f(self.low)}, {f(self.high)}], {self.method}, {seeds})"


def t_quantile(p: float, df: float) -> float:
    """The p-quantile of Student's t with ``df`` degrees of freedom."""
    from scipy.stats import t
    return float(t.ppf(p, df))


def _interval(mean: float, se: float, df: float, n: int, method: str, level: float) -> Interval:
    if not df > 0 or math.isnan(se):
        return Interval(mean, -math.inf, math.inf, n, method)
    half = t_quantile(0.5 + level / 2, df) * se if se > 0 else 0.0
    return Interval(mean, mean - half, mean + half, n, method)


def _clean(values) -> list[float]:
    return [float(v) for v in values if v is not None and not math.isnan(v)]


def mean_interval(values, level: float = LEVEL) -> Interval:
    """The mean of ``values`` (e.g. one setting over seeds) with its t-interval."""
    vals = _clean(values)
    n = len(vals)
    if n == 0:
        return Interval(math.nan, -math.inf, math.inf, 0, "one-sample")
    mean = statistics.fmean(vals)
    se = statistics.stdev(vals) / math.sqrt(n) if n > 1 else math.nan
    return _interval(mean, se, n - 1, n, "one-sample", level)


def difference(a: dict, b: dict, level: float = LEVEL) -> Interval:
    """``mean(a) - mean(b)`` for two settings given as ``{seed: value}``: paired by seed when both ran the
    same seeds, Welch otherwise."""
    a = {k: float(v) for k, v in a.items() if v is not None and not math.isnan(v)}
    b = {k: float(v) for k, v in b.items() if v is not None and not math.isnan(v)}
    if a and set(a) == set(b):
        iv = mean_interval([a[k] - b[k] for k in a], level)
        return Interval(iv.mean, iv.low, iv.high, iv.n, "paired")
    va, vb = list(a.values()), list(b.values())
    n = min(len(va), len(vb))
    if n == 0:
        return Interval(math.nan, -math.inf, math.inf, 0, "welch")
    mean = statistics.fmean(va) - statistics.fmean(vb)
    if n < 2:
        return Interval(mean, -math.inf, math.inf, n, "welch")
    qa, qb = statistics.variance(va) / len(va), statistics.variance(vb) / len(vb)
    se = math.sqrt(qa + qb)
    if se == 0:
        return Interval(mean, mean, mean, n, "welch")
    df = (qa + qb) ** 2 / (qa ** 2 / (len(va) - 1) + qb ** 2 / (len(vb) - 1))  # Welch–Satterthwaite
    return _interval(mean, se, df, n, "welch", level)


def shift(iv: Interval, by: float) -> Interval:
    """``iv`` minus a constant (e.g. a threshold), so a claim about a threshold reads as one about 0."""
    return Interval(iv.mean - by, iv.low - by, iv.high - by, iv.n, iv.method)


# ---------------------------------------------------------------------------- the rules
def directional(iv: Interval, side: int = 1, effect: float | None = None) -> str:
    """The paper says the difference has sign ``side`` (+1/-1), of size ``effect`` (>= 0, in ``iv``'s unit,
    None when the paper gives no size). Returns HELD, NOT_HELD or INCONCLUSIVE (see the module doc)."""
    low, high = (iv.low, iv.high) if side > 0 else (-iv.high, -iv.low)
    if low > 0:
        return HELD
    if high < 0 or (effect is not None and high < SIZE_FRACTION * effect):
        return NOT_HELD
    return INCONCLUSIVE


def smaller_than_paper(iv: Interval, side: int, effect: float | None) -> bool:
    """True when the interval rules out half the paper's effect (on the paper's side)."""
    high = iv.high if side > 0 else -iv.low
    return effect is not None and high < SIZE_FRACTION * effect


def at_least(iv: Interval, margin: float) -> str:
    """Non-inferiority: the difference (new - reference) is at least ``-margin``."""
    if iv.low > -margin:
        return HELD
    if iv.high < -margin:
        return NOT_HELD
    return INCONCLUSIVE


def within(iv: Interval, tol: float) -> str:
    """Equivalence: the quantity lies inside ``(-tol, tol)``."""
    if -tol < iv.low and iv.high < tol:
        return HELD
    if iv.low >= tol or iv.high <= -tol:
        return NOT_HELD
    return INCONCLUSIVE


def combine(words: list[str]) -> str:
    """A claim of several parts: held if all held, did not hold if any did not, else inconclusive."""
    if any(w == NOT_HELD for w in words):
        return NOT_HELD
    return HELD if words and all(w == HELD for w in words) else INCONCLUSIVE


def verdict_text(word: str, iv: Interval | None = None, scale: float = 1.0, unit: str = "",
                 digits: int = 1) -> str:
    """``**held**``, ``**did not hold**`` or ``**inconclusive** (CI [a, b])``."""
    if word != INCONCLUSIVE:
        return f"**{word}**"
    if iv is None:
        return "**inconclusive**"
    return f"**inconclusive** (CI [{_number(iv.low, scale, digits)}, {_number(iv.high, scale, digits)}]{unit})"


def claim(iv: Interval, side: int = 1, effect: float | None = None, scale: float = 1.0, unit: str = "",
          digits: int = 1) -> tuple[str, str]:
    """(word, text) of a directional claim: the difference with its CI, then the verdict."""
    word = directional(iv, side, effect)
    note = " (smaller than the paper's: the CI excludes half its size)" if (
        word == HELD and smaller_than_paper(iv, side, effect)) else ""
    return word, f"{iv.text(scale, unit, digits)} → {verdict_text(word, iv, scale, unit, digits)}{note}"


def by_seed(rows: list[dict], key: str, **match) -> dict:
    """``{seed: row[key]}`` over the rows whose fields equal ``match`` (the input of :func:`difference`)."""
    return {r["seed"]: r[key] for r in rows if all(r.get(k) == v for k, v in match.items())}


# ---------------------------------------------------------------------------- power
def pooled_std(groups: list[list[float]]) -> float:
    """The seed-to-seed std pooled over settings (each group: one setting's values over seeds)."""
    groups = [_clean(g) for g in groups]
    dof = sum(len(g) - 1 for g in groups if len(g) > 1)
    if dof == 0:
        return math.nan
    return math.sqrt(sum((len(g) - 1) * statistics.variance(g) for g in groups if len(g) > 1) / dof)


def seeds_needed(effect: float, std: float, paired: bool = True, correlation: float = 0.0,
                 level: float = LEVEL, power: float = POWER, max_seeds: int = 1000) -> int:
    """Seeds per setting so that a two-sided t-test at ``level`` detects a true difference ``effect`` with
    probability ``power`` (exact, by the noncentral t), given the seed-to-seed ``std`` of one setting.

    ``paired``: the settings share seeds and the per-seed differences are tested; their std is
    ``std * sqrt(2 (1 - correlation))`` (``correlation`` of the two settings' results across seeds, 0 when
    unknown: conservative unless seeds anti-correlate). Otherwise a two-sample test with equal group sizes.
    E.g. Table 2's effect, 3.9 % of the reference (2.8 of 70.9 points): ``seeds_needed(0.039 * m, s)``."""
    from scipy.stats import nct

    if not effect > 0 or not std > 0:
        raise ValueError(f"effect {effect!r} and std {std!r} must be positive")
    for n in range(2, max_seeds + 1):
        if paired:
            df, se = n - 1, std * math.sqrt(2 * (1 - correlation)) / math.sqrt(n)
        else:
            df, se = 2 * n - 2, std * math.sqrt(2 / n)
        crit = t_quantile(0.5 + level / 2, df)
        ncp = effect / se
        # both tails; the lower one as the upper tail of -T (scipy's nct.cdf returns nan far in the tail)
        upper, lower = float(nct.sf(crit, df, ncp)), float(nct.sf(crit, df, -ncp))
        if upper + (0.0 if math.isnan(lower) else lower) >= power:
            return n
    raise ValueError(f"more than {max_seeds} seeds needed for effect {effect} at std {std}")


def power_note(groups: list[list[float]], effect: float | None, what: str, scale: float = 100,
               unit: str = " points") -> str:
    """One line for a report: the pooled seed-to-seed std and the seeds per setting that ``effect`` needs."""
    std = pooled_std(groups)
    if math.isnan(std) or std == 0 or effect is None or not effect > 0:
        return "seed-to-seed std: not measurable here (one seed per setting, or no spread)"
    try:
        n = str(seeds_needed(effect, std))
    except ValueError:
        n = "more than 1000"
    return (f"seed-to-seed std {scale * std:.2f}{unit} (pooled over settings): {n} seeds per setting would "
            f"detect {what} ({scale * effect:.1f}{unit}) at {100 * LEVEL:.0f}% confidence with "
            f"{100 * POWER:.0f}% power (paired, seeds assumed uncorrelated)")
