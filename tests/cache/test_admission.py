"""Which renders go to the lower cache tiers: those asked for ``after`` times (``Admission``)."""

from __future__ import annotations

import pytest

from iiifserver.cache.admission import Admission, Doorkeeper


def test_with_one_ask_every_render_is_written_at_once() -> None:
    admission = Admission(1)
    assert admission.rendered("a")
    assert admission.rendered("a")
    assert not admission.hit("a")  # already written: a memory hit writes nothing again
    assert len(admission) == 0
    assert admission.deferred == 0


def test_a_render_asked_for_again_is_written_at_its_second_ask() -> None:
    admission = Admission(2)
    assert not admission.rendered("a")  # asked once: memory only
    assert admission.deferred == 1
    assert admission.hit("a")  # found in memory at the second ask: write it now
    assert admission.admitted_on_hit == 1
    assert not admission.hit("a")  # written: counted no more
    assert len(admission) == 0


def test_a_render_made_again_counts_as_an_ask() -> None:
    """The memory tier dropped it before the second ask: the second render is written."""
    admission = Admission(2)
    assert not admission.rendered("a")
    assert admission.rendered("a")
    assert admission.admitted_on_hit == 0


def test_hits_of_entries_that_never_waited_count_nothing() -> None:
    """Stored tiles and entries already written: their memory hits are not asks of a render."""
    admission = Admission(2)
    assert not admission.hit("tile")
    assert not admission.hit("tile")
    assert len(admission) == 0
    assert not admission.rendered("tile")  # its first render still counts as the first ask


def test_more_asks() -> None:
    admission = Admission(3)
    assert not admission.rendered("a")
    assert not admission.hit("a")
    assert admission.hit("a")
    assert not admission.rendered("b")
    assert not admission.rendered("b")
    assert admission.rendered("b")


def test_bounded_oldest_forgotten_first() -> None:
    admission = Admission(2, max_keys=3)
    for key in "abcd":
        assert not admission.rendered(key)
    assert len(admission) == 3
    assert not admission.hit("a")  # forgotten: counts from one again when rendered
    assert admission.hit("d")
    assert not admission.rendered("a")


def test_recently_asked_keys_stay() -> None:
    admission = Admission(3, max_keys=2)
    assert not admission.rendered("a")
    assert not admission.rendered("b")
    assert not admission.hit("a")  # a is the newest now
    assert not admission.rendered("c")  # b goes
    assert admission.hit("a")
    assert not admission.hit("b")


def test_forget() -> None:
    admission = Admission(2)
    admission.rendered("a")
    admission.rendered("b")
    admission.forget("a")
    assert not admission.hit("a")
    assert admission.hit("b")
    admission.rendered("c")
    admission.forget()
    assert len(admission) == 0


# -- the doorkeeper of the memory tier ------------------------------------------------------------


def test_a_key_is_seen_again_from_its_second_ask() -> None:
    door = Doorkeeper()
    assert not door.seen_again("a")
    assert door.seen_again("a")
    assert door.seen_again("a")
    assert not door.seen_again("b")
    assert door.first_asks == 2


def test_a_key_is_remembered_for_one_to_two_generations() -> None:
    door = Doorkeeper(bits=1 << 20, generation=100)
    assert not door.seen_again("kept")
    for i in range(99):  # the rest of its generation
        door.seen_again(f"other-{i}")
    for i in range(99):  # a generation later (not yet full): it is in the previous one
        door.seen_again(f"later-{i}")
    assert door.seen_again("kept")  # and now carried into the current one
    assert not door.seen_again("forgotten")
    for i in range(200):  # two generations without it
        door.seen_again(f"much-later-{i}")
    assert not door.seen_again("forgotten")  # forgotten: a first ask again
    assert door.seen_again("forgotten")


def test_forget_clears_both_generations() -> None:
    door = Doorkeeper(bits=1 << 16, generation=4)
    for key in ("a", "b", "c", "d", "e"):  # "a" to "d" fill a generation, now the previous one
        door.seen_again(key)
    door.forget()
    assert not door.seen_again("a")
    assert not door.seen_again("e")


def test_a_collision_only_admits_early() -> None:
    """Every bit set (eight bits): any key passes as seen, which keeps it at once, as before."""
    door = Doorkeeper(bits=8, generation=1_000)
    for i in range(200):
        door.seen_again(str(i))
    assert all(door.seen_again(f"new-{i}") for i in range(50))


@pytest.mark.parametrize("bits", [0, 4, 12, 1000])
def test_the_bits_are_a_power_of_two(bits: int) -> None:
    with pytest.raises(ValueError, match="power of two"):
        Doorkeeper(bits=bits)
