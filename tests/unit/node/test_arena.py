"""Unit tests for swarm.node.arena.Allocator (pure bookkeeping, no memory is touched)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from swarm.node.arena import PAGE, Allocator, align


def test_align():
    assert align(0) == 0
    assert align(1) == PAGE
    assert align(PAGE) == PAGE
    assert align(PAGE + 1) == 2 * PAGE


def test_capacity_is_rounded_down_to_pages():
    a = Allocator(3 * PAGE + 100)
    assert a.capacity == 3 * PAGE
    assert a.largest_free() == 3 * PAGE


def test_allocations_are_page_aligned_and_sized():
    a = Allocator(16 * PAGE)
    x = a.alloc(1)
    y = a.alloc(PAGE + 1)
    z = a.alloc(0)
    assert (x, y, z) == (0, PAGE, 3 * PAGE)
    for off in (x, y, z):
        assert off % PAGE == 0
    assert a.size_of(x) == PAGE
    assert a.size_of(y) == 2 * PAGE
    assert a.size_of(z) == PAGE


def test_first_fit_reuses_lowest_freed_range():
    a = Allocator(8 * PAGE)
    offs = [a.alloc(PAGE) for _ in range(4)]
    assert offs == [0, PAGE, 2 * PAGE, 3 * PAGE]
    a.free(offs[2])
    a.free(offs[0])
    assert a.alloc(PAGE) == offs[0]          # lowest free range first
    assert a.alloc(PAGE) == offs[2]
    assert a.alloc(PAGE) == 4 * PAGE         # then the untouched tail


def test_first_fit_skips_ranges_too_small():
    a = Allocator(8 * PAGE)
    offs = [a.alloc(PAGE) for _ in range(4)]
    a.free(offs[0])                          # hole of 1 page at 0
    assert a.alloc(2 * PAGE) == 4 * PAGE     # does not fit the hole
    assert a.alloc(PAGE) == 0


def test_free_coalesces_middle_then_first_into_one_range():
    a = Allocator(3 * PAGE)
    x, y, z = a.alloc(PAGE), a.alloc(PAGE), a.alloc(PAGE)
    assert a.largest_free() == 0
    a.free(y)
    a.free(x)
    assert a.largest_free() == 2 * PAGE      # one range, not two of a page each
    assert a.alloc(2 * PAGE) == 0
    a.free(0)
    a.free(z)
    assert a.largest_free() == 3 * PAGE
    assert a.alloc(3 * PAGE) == 0


def test_free_coalesces_with_following_range():
    a = Allocator(3 * PAGE)
    x, y, _ = a.alloc(PAGE), a.alloc(PAGE), a.alloc(PAGE)
    a.free(x)
    a.free(y)
    assert a.largest_free() == 2 * PAGE


def test_free_coalesces_both_neighbours():
    a = Allocator(4 * PAGE)
    w, x, y, _ = (a.alloc(PAGE) for _ in range(4))
    a.free(w)
    a.free(y)
    assert a.largest_free() == PAGE
    a.free(x)
    assert a.largest_free() == 3 * PAGE
    assert a.alloc(3 * PAGE) == 0


def test_none_when_full():
    a = Allocator(2 * PAGE)
    assert a.alloc(PAGE) == 0
    assert a.alloc(PAGE) == PAGE
    assert a.alloc(1) is None
    assert a.used == 2 * PAGE


def test_none_when_larger_than_capacity_or_fragmented():
    a = Allocator(4 * PAGE)
    assert a.alloc(4 * PAGE + 1) is None
    offs = [a.alloc(PAGE) for _ in range(4)]
    a.free(offs[0])
    a.free(offs[2])
    assert a.used == 2 * PAGE
    assert a.alloc(2 * PAGE) is None         # 2 pages free, but not contiguous


def test_zero_capacity():
    a = Allocator(0)
    assert a.alloc(1) is None
    assert a.largest_free() == 0


def test_used_accounting():
    a = Allocator(10 * PAGE)
    assert a.used == 0
    x = a.alloc(10)
    y = a.alloc(3 * PAGE)
    assert a.used == 4 * PAGE
    a.free(x)
    assert a.used == 3 * PAGE
    a.free(y)
    assert a.used == 0
    assert a.largest_free() == a.capacity


def test_double_free_is_an_error():
    a = Allocator(2 * PAGE)
    x = a.alloc(1)
    a.free(x)
    with pytest.raises(KeyError):
        a.free(x)


ops = st.lists(
    st.one_of(
        st.tuples(st.just("alloc"), st.integers(min_value=0, max_value=6 * PAGE)),
        st.tuples(st.just("free"), st.integers(min_value=0, max_value=1000)),
    ),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(pages=st.integers(min_value=1, max_value=32), ops=ops)
def test_random_sequences_never_overlap_and_free_all_restores_capacity(pages, ops):
    a = Allocator(pages * PAGE)
    live: dict[int, int] = {}                # offset -> size
    for op, arg in ops:
        if op == "alloc":
            largest_before = a.largest_free()
            off = a.alloc(arg)
            if off is None:
                assert largest_before < align(max(arg, 1))   # None only when nothing fits
                continue
            size = a.size_of(off)
            assert off % PAGE == 0
            assert size == align(max(arg, 1))
            assert 0 <= off and off + size <= a.capacity
            for o, s in live.items():
                assert off + size <= o or o + s <= off, "overlapping ranges"
            live[off] = size
        elif live:
            off = sorted(live)[arg % len(live)]
            a.free(off)
            del live[off]
        assert a.used == sum(live.values())
        assert a.largest_free() <= a.capacity - a.used
    for off in list(live):
        a.free(off)
    assert a.used == 0
    assert a.largest_free() == a.capacity
    assert a.alloc(a.capacity) == 0
