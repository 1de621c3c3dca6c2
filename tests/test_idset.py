"""IdSet, the bitmap of row ids: the same answers as a plain set, whatever the ids."""
import random

import pytest

from migration_bridge.idset import IdSet

HUGE = 2**31  # ids from here on are kept apart from the bitmap


@pytest.mark.parametrize("seed", range(5))
def test_ranges_and_single_ids_hold_what_a_set_holds(seed):
    rng = random.Random(seed)
    for _ in range(300):
        ids, expected = IdSet(), set()
        for _ in range(rng.randint(0, 6)):
            first = rng.choice([rng.randint(-40, 40), rng.randint(0, 200), rng.randint(HUGE, HUGE + 30)])
            last = first + rng.randint(-1, 70)  # an empty range too
            if rng.random() < 0.3:
                ids.add(first)
                expected.add(first)
            else:
                ids.add_range(first, last)
                expected.update(range(first, last + 1))
        assert len(ids) == len(expected)
        assert list(ids) == sorted(i for i in expected if 0 <= i < HUGE) + sorted(i for i in expected if not 0 <= i < HUGE)
        assert all((i in ids) == (i in expected) for i in range(-50, 300))


@pytest.mark.parametrize("seed", range(3))
def test_difference_and_intersection_are_a_sets(seed):
    rng = random.Random(seed)
    for _ in range(300):
        a, b = (set(rng.sample([*range(-20, 20), *range(0, 400), *range(HUGE, HUGE + 20)], rng.randint(0, 120)))
                for _ in range(2))
        if rng.random() < 0.2:
            b = set(a)
        assert IdSet(sorted(a)).difference(IdSet(sorted(b))) == sorted(a - b)
        both = IdSet(sorted(a)) & IdSet(sorted(b))
        assert (len(both), set(both)) == (len(a & b), a & b)


def test_a_range_over_bits_already_set_counts_each_id_once():
    ids = IdSet([3, 9, 10, 64])
    ids.add_range(0, 100)
    assert len(ids) == 101 and list(ids) == list(range(101))


def test_from_ranges_builds_a_million_ids_without_visiting_each():
    ids = IdSet.from_ranges([(1, 1_000_000), (1_000_005, 2_000_000)])
    assert len(ids) == 1_999_996
    assert 1_000_000 in ids and 1_000_001 not in ids and 1_000_005 in ids and 2_000_001 not in ids


def test_an_id_list_from_ranges_holds_the_ids_in_order():
    from migration_bridge.verify.state import IdList

    ranges = [(-4, -2), (0, 0), (5, 9), (HUGE, HUGE + 1)]
    ids = [i for first, last in ranges for i in range(first, last + 1)]
    built = IdList.from_ranges(ranges)
    assert list(built) == ids == list(IdList(ids))
    assert all(i in built for i in ids) and 1 not in built and len(built) == len(ids)
