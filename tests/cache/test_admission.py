"""Which renders go to the lower cache tiers: those asked for ``after`` times (``Admission``)."""

from __future__ import annotations

from iiifserver.cache.admission import Admission


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
