"""Cohorts (permerge.cohorts): which statistics pass, permutation job and sweep job cover which seed pair,
decided from the cohorts already on disk, so that adding a seed computes only its own pairs."""

from itertools import combinations

import pytest

from permerge import cohorts


def test_names_round_trip_to_their_pairs_and_seeds():
    assert cohorts.name([3, 1, 2]) == "seeds1-2-3"
    assert cohorts.pairs("seeds1-2-3") == [(1, 2), (1, 3), (2, 3)]
    assert cohorts.name([6], [5, 1, 2]) == "seeds6x1-2-5"
    assert cohorts.pairs("seeds6x1-2-5") == [(1, 6), (2, 6), (5, 6)]
    assert cohorts.seeds("seeds6x1-2-5") == [1, 2, 5, 6]
    assert cohorts.pairs("seeds6-7x1") == [(1, 6), (1, 7), (6, 7)]
    # a listed pair keeps its orientation (A, B); its statistics need the cross block once
    assert cohorts.listed([(4, 3), (1, 2)]) == "pairs1-2_4-3"
    assert cohorts.pairs("pairs1-2_4-3") == [(1, 2), (4, 3)]
    assert cohorts.blocks("pairs1-2_4-3") == [(1, 2), (3, 4)]
    assert cohorts.blocks("pairs1-2_2-1") == [(1, 2)]
    assert cohorts.pairs("pairs1-2_3-4") == [(1, 2), (3, 4)]
    assert cohorts.seeds("pairs1-2_3-4") == [1, 2, 3, 4]
    assert all(cohorts.is_cohort(c) for c in ("seeds1-2", "seeds6x1-2", "pairs1-2"))
    assert not any(cohorts.is_cohort(c) for c in ("fraction1.safetensors", "seeds", "seeds1x", "pairs1"))


@pytest.mark.parametrize("bad", ["fraction0.5.safetensors", "seeds1-", "pairs1-2_"])
def test_a_name_that_is_no_cohort_is_rejected(bad):
    with pytest.raises(ValueError, match="is not a cohort"):
        cohorts.pairs(bad)


def test_overlapping_new_and_old_seeds_are_rejected():
    with pytest.raises(ValueError, match="disjoint"):
        cohorts.name([1, 2], [2, 3])


def test_a_fresh_grid_is_one_cohort_of_every_seed():
    needed = list(combinations([1, 2, 3, 4, 5], 2))
    assignment = cohorts.assign(needed, [])
    assert set(assignment.values()) == {"seeds1-2-3-4-5"}
    assert set(assignment) == set(needed)


def test_a_new_seed_gets_a_cohort_of_its_pairs_and_old_pairs_keep_theirs():
    old = cohorts.assign(combinations([1, 2, 3, 4, 5], 2), [])
    grown = cohorts.assign(combinations([1, 2, 3, 4, 5, 6], 2), ["seeds1-2-3-4-5"])
    assert {p: c for p, c in grown.items() if 6 not in p} == old
    assert {c for p, c in grown.items() if 6 in p} == {"seeds6x1-2-3-4-5"}
    # two seeds at once: their pair and their pairs with the old seeds, one pass
    two = cohorts.assign(combinations([1, 2, 3, 6, 7], 2), ["seeds1-2-3-4-5"])
    assert {c for p, c in two.items() if {6, 7} & set(p)} == {"seeds6-7x1-2-3"}
    # once the new cohort is on disk (newer), the assignment is the same
    again = cohorts.assign(combinations([1, 2, 3, 4, 5, 6], 2), ["seeds1-2-3-4-5", "seeds6x1-2-3-4-5"])
    assert again == grown


def test_removing_a_seed_moves_no_pair():
    old = cohorts.assign(combinations([1, 2, 3, 4, 5], 2), ["seeds1-2-3-4-5"])
    fewer = cohorts.assign(combinations([1, 2, 4, 5], 2), ["seeds1-2-3-4-5"])
    assert fewer == {p: c for p, c in old.items() if 3 not in p}


def test_pairs_of_seeds_already_covered_are_listed_exactly():
    # seed 3 came back after seed 6 was added without it: only (3, 6) is new, and both seeds are known
    done = ["seeds1-2-3-4-5", "seeds6x1-2-4-5"]
    assignment = cohorts.assign(combinations([1, 2, 3, 4, 5, 6], 2), done)
    assert assignment[(3, 6)] == "pairs3-6"
    assert sum(c == "pairs3-6" for c in assignment.values()) == 1
    # explicit pairs of a fresh grid: exactly those pairs, each with its reference seed as A
    assert set(cohorts.assign([(2, 1), (3, 4)], []).values()) == {"pairs2-1_3-4"}
    assert set(cohorts.assign([(1, 2), (3, 4)], []).values()) == {"pairs1-2_3-4"}


def test_a_pair_is_covered_only_in_its_own_orientation():
    # (2, 1) maps seed 1 into seed 2's basis: seeds1-2's file is seed1-seed2, so (2, 1) needs a cohort of its own
    assignment = cohorts.assign([(1, 2), (2, 1)], ["seeds1-2"])
    assert assignment == {(1, 2): "seeds1-2", (2, 1): "pairs2-1"}
    # all-seed merges to reference 3 reuse the pairs (3, b): with the grid's pairs, one listed cohort
    needed = [*combinations([1, 2, 3], 2), (3, 1), (3, 2)]
    assert set(cohorts.assign(needed, []).values()) == {"pairs1-2_1-3_3-1_2-3_3-2"}


def test_a_long_list_of_reversed_pairs_is_a_clear_error():
    many = [(b, a) for a, b in combinations(range(100, 140), 2)]
    with pytest.raises(ValueError, match="smaller seed first"):
        cohorts.assign(many, [])
    # the same pairs the usual way round: one cohort named by the seeds
    assert set(cohorts.assign([(a, b) for b, a in many], []).values()) == {cohorts.name(range(100, 140))}


def test_the_oldest_cohort_covering_a_pair_wins():
    done = ["seeds1-2", "seeds1-2-3"]  # oldest first
    assert cohorts.assign([(1, 2), (1, 3)], done) == {(1, 2): "seeds1-2", (1, 3): "seeds1-2-3"}
    assert cohorts.assign([(1, 2)], list(reversed(done))) == {(1, 2): "seeds1-2-3"}


def test_a_pairs_file_is_named_once_for_the_workflow_and_its_jobs():
    assert cohorts.pair_file("r/permutations/mlm/all/seeds1-2", "permutations", 1, 2) == (
        "r/permutations/mlm/all/seeds1-2/seed1-seed2.safetensors"
    )
    assert (
        cohorts.pair_file("r/losses/sst2/all/pairs2-1", "losses", 2, 1) == "r/losses/sst2/all/pairs2-1/seed2-seed1.tsv"
    )
