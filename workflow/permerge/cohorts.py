"""Statistics cohorts: which statistics pass holds the cross blocks of which seed pair.

A task's activation statistics are written per *cohort* (stats/{task}/{cohort}/), one pass over the data
that forwards the cohort's seeds and keeps the cross blocks of the cohort's pairs. The cohort's name says
which pairs it covers, so a job's params and inputs depend on its wildcard only:

- ``seeds1-2-3``: every pair among seeds 1, 2, 3 (a fresh grid: one cohort, one pass, as before cohorts);
- ``seeds6x1-2-3``: seed 6 with each of 1, 2, 3 (and among the seeds left of the ``x``, if several):
  what adding seed 6 to a finished grid needs;
- ``pairs1-2_3-4``: exactly the pairs listed (explicit `pairs:` that fit neither form).

Pairs are unordered here (a cross block read the other way round is its transpose). `assign` decides, when
the workflow's DAG is built, which cohort covers each pair: the complete cohorts already on disk, oldest
first, then one new cohort for the pairs none of them covers. A pair keeps the cohort that first covered
it, so adding seeds never moves an old pair to another statistics file (its permutation job is not rerun).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from itertools import combinations

_SEEDS = r"\d+(?:-\d+)*"
PATTERN = rf"seeds{_SEEDS}(?:x{_SEEDS})?|pairs\d+-\d+(?:_\d+-\d+)*"  # the wildcard constraint
MAX_NAME = 200  # characters: a listed cohort longer than this is named by its seeds instead (a superset)

Pair = tuple[int, int]


def _seeds(text: str) -> list[int]:
    return [int(s) for s in text.split("-")]


def _key(a: int, b: int) -> Pair:
    return (a, b) if a < b else (b, a)


def name(new: Iterable[int], old: Iterable[int] = ()) -> str:
    """The cohort of every pair among `new` and every (new, old) pair."""
    new, old = sorted(set(new)), sorted(set(old))
    if not new or set(new) & set(old):
        raise ValueError(f"a cohort needs new seeds, disjoint from the old ones: new {new}, old {old}")
    return "seeds" + "-".join(map(str, new)) + ("x" + "-".join(map(str, old)) if old else "")


def listed(pairs: Iterable[Pair]) -> str:
    """The cohort of exactly `pairs`."""
    keys = sorted({_key(int(a), int(b)) for a, b in pairs})
    if not keys or any(a == b for a, b in keys):
        raise ValueError(f"a cohort needs pairs of two different seeds, got {keys}")
    return "pairs" + "_".join(f"{a}-{b}" for a, b in keys)


def pairs(cohort: str) -> list[Pair]:
    """The unordered pairs (a < b) a cohort covers, sorted."""
    if not re.fullmatch(PATTERN, cohort):
        raise ValueError(f"{cohort!r} is not a statistics cohort (seeds1-2-3, seeds4x1-2-3 or pairs1-2_3-4)")
    if cohort.startswith("pairs"):
        return sorted({_key(*map(int, p.split("-"))) for p in cohort[len("pairs") :].split("_")})
    new, _, old = cohort[len("seeds") :].partition("x")
    new, old = _seeds(new), _seeds(old) if old else []
    return sorted({_key(a, b) for a, b in combinations(new, 2)} | {_key(a, b) for a in new for b in old})


def seeds(cohort: str) -> list[int]:
    """The seeds a cohort's pass forwards: those of its pairs (or its single seed), sorted."""
    found = {s for p in pairs(cohort) for s in p}
    if not found:  # seeds5: one seed, no pair
        found = set(_seeds(cohort[len("seeds") :]))
    return sorted(found)


def is_cohort(text: str) -> bool:
    return re.fullmatch(PATTERN, text) is not None


def new_cohort(uncovered: Iterable[Pair], covered_seeds: Iterable[int]) -> str:
    """A cohort for the pairs `uncovered`: seeds never covered before x the other seeds when that form gives
    exactly these pairs (a fresh grid, new seeds), else the pairs listed."""
    todo = {_key(int(a), int(b)) for a, b in uncovered}
    involved = {s for p in todo for s in p}
    new = involved - set(covered_seeds)
    if new:
        candidate = name(new, involved - new)
        if set(pairs(candidate)) == todo:
            return candidate
    candidate = listed(todo)
    return candidate if len(candidate) <= MAX_NAME else name(involved)


def assign(needed: Iterable[Pair], complete: Sequence[str]) -> dict[Pair, str]:
    """Unordered pair -> the cohort whose statistics it reads. `complete`: the cohorts on disk, oldest
    first; each pair takes the first that covers it, the rest share one new cohort."""
    todo = {_key(int(a), int(b)) for a, b in needed}
    out: dict[Pair, str] = {}
    for cohort in complete:
        for p in pairs(cohort):
            if p in todo and p not in out:
                out[p] = cohort
    uncovered = todo - set(out)
    if uncovered:
        cohort = new_cohort(uncovered, {s for c in complete for s in seeds(c)})
        out.update(dict.fromkeys(uncovered, cohort))
    return out


def cohort_of(assignment: dict[Pair, str], a: int, b: int) -> str:
    return assignment[_key(int(a), int(b))]
