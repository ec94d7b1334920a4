"""Cohorts: which statistics pass, permutation job and λ-sweep job hold the work of which seed pair.

A task's activation statistics, permutations and loss files are written per *cohort* (stats/{task}/{cohort}/,
permutations/{task}/{variant}/{cohort}/, losses/{task}/{variant}/{cohort}/): one job forwards the cohort's
seeds once and handles all its pairs. The cohort's name says which pairs it covers, so a job's params and
inputs depend on its wildcard only:

- ``seeds1-2-3``: every pair a < b among seeds 1, 2, 3 (a fresh grid: one cohort, one job per task and variant);
- ``seeds6x1-2-3``: seed 6 with each of 1, 2, 3 (and the pairs among the seeds left of the ``x``, if several),
  as (1, 6), (2, 6), (3, 6): what adding seed 6 to a finished grid needs;
- ``pairs2-1_3-4``: exactly the pairs listed, each as (A, B) (explicit `pairs:` that fit neither form, or a
  pair whose reference A is the larger seed).

A pair is oriented, (A, B): its permutations map B into A's basis. A statistics pass needs each pair's
cross block once, whatever the orientation (`blocks`). `assign` decides, when the workflow's DAG is built,
which cohort covers each pair: the complete cohorts already on disk, oldest first, then one new cohort for
the pairs none of them covers. A pair keeps the cohort that first covered it, so adding seeds never moves an
old pair's files (its jobs are not rerun).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from itertools import combinations

_SEEDS = r"\d+(?:-\d+)*"
PATTERN = rf"seeds{_SEEDS}(?:x{_SEEDS})?|pairs\d+-\d+(?:_\d+-\d+)*"  # the wildcard constraint
MAX_NAME = 200  # characters (a file name may hold 255 bytes): a longer listed cohort is named by its seeds

Pair = tuple[int, int]


def _seeds(text: str) -> list[int]:
    return [int(s) for s in text.split("-")]


def _key(a: int, b: int) -> Pair:
    return (a, b) if a < b else (b, a)


def _oriented(pairs: Iterable[Pair]) -> set[Pair]:
    out = {(int(a), int(b)) for a, b in pairs}
    if not out or any(a == b for a, b in out):
        raise ValueError(f"a cohort needs pairs of two different seeds, got {sorted(out)}")
    return out


def name(new: Iterable[int], old: Iterable[int] = ()) -> str:
    """The cohort of every pair among `new` and every (old, new) pair, the smaller seed as A."""
    new, old = sorted(set(new)), sorted(set(old))
    if not new or set(new) & set(old):
        raise ValueError(f"a cohort needs new seeds, disjoint from the old ones: new {new}, old {old}")
    return "seeds" + "-".join(map(str, new)) + ("x" + "-".join(map(str, old)) if old else "")


def listed(pairs: Iterable[Pair]) -> str:
    """The cohort of exactly `pairs`, each keeping its orientation (sorted by its seeds)."""
    todo = sorted(_oriented(pairs), key=lambda p: (_key(*p), p))
    return "pairs" + "_".join(f"{a}-{b}" for a, b in todo)


def pairs(cohort: str) -> list[Pair]:
    """The oriented pairs (A, B) a cohort covers, sorted by their seeds."""
    if not re.fullmatch(PATTERN, cohort):
        raise ValueError(f"{cohort!r} is not a cohort (seeds1-2-3, seeds4x1-2-3 or pairs1-2_3-4)")
    if cohort.startswith("pairs"):
        listed_pairs = [tuple(map(int, p.split("-"))) for p in cohort[len("pairs") :].split("_")]
        return sorted(set(listed_pairs), key=lambda p: (_key(*p), p))
    new, _, old = cohort[len("seeds") :].partition("x")
    new, old = _seeds(new), _seeds(old) if old else []
    return sorted({_key(a, b) for a, b in combinations(new, 2)} | {_key(a, b) for a in new for b in old})


def blocks(cohort: str) -> list[Pair]:
    """The unordered pairs (a < b) whose cross blocks a statistics pass of the cohort keeps."""
    return sorted({_key(a, b) for a, b in pairs(cohort)})


def seeds(cohort: str) -> list[int]:
    """The seeds a cohort's jobs load: those of its pairs (or its single seed), sorted."""
    found = {s for p in pairs(cohort) for s in p}
    if not found:  # seeds5: one seed, no pair
        found = set(_seeds(cohort[len("seeds") :]))
    return sorted(found)


def is_cohort(text: str) -> bool:
    return re.fullmatch(PATTERN, text) is not None


def new_cohort(uncovered: Iterable[Pair], covered_seeds: Iterable[int]) -> str:
    """A cohort for the oriented pairs `uncovered`: seeds never covered before x the other seeds when that
    form gives exactly these pairs (a fresh grid, new seeds), else the pairs listed."""
    todo = _oriented(uncovered)
    involved = {s for p in todo for s in p}
    new = involved - set(covered_seeds)
    if new:
        candidate = name(new, involved - new)
        if set(pairs(candidate)) == todo:
            return candidate
    candidate = listed(todo)
    if len(candidate) <= MAX_NAME:
        return candidate
    if all(a < b for a, b in todo):  # a superset named by its seeds: its extra pairs are computed too
        return name(involved)
    raise ValueError(
        f"{len(todo)} pairs with the larger seed as A do not fit one cohort name ({len(candidate)} characters, "
        f"at most {MAX_NAME}): list the pairs with the smaller seed first (pairs:) or grow the grid in steps"
    )


def assign(needed: Iterable[Pair], complete: Sequence[str]) -> dict[Pair, str]:
    """Oriented pair -> the cohort that holds its work. `complete`: the cohorts on disk, oldest first; each
    pair takes the first that covers it (same orientation), the rest share one new cohort."""
    todo = {(int(a), int(b)) for a, b in needed}
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
    return assignment[(int(a), int(b))]


SUFFIX = {"permutations": ".safetensors", "losses": ".tsv"}  # a pair's file in a cohort folder, by kind


def pair_file(folder, kind: str, a: int, b: int) -> str:
    """The file of pair (a, b) inside a cohort folder of `kind` (permutations, losses): seed{a}-seed{b}.ext,
    the one name the workflow's inputs and the jobs that write and read them share."""
    return f"{folder}/seed{a}-seed{b}{SUFFIX[kind]}"
