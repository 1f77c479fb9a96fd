"""SeqTracker: what a message's (run_id, seq) says about the messages before it."""

from __future__ import annotations

import enum
from typing import Dict, List, Set

from hypothesis import given
from hypothesis import strategies as st

from raptor.consumer.fleet import Apply, Fleet
from raptor.consumer.seq import Seen, SeqTracker, Verdict


def test_the_verdicts_of_a_run() -> None:
    tracker = SeqTracker()
    verdicts = [tracker.observe("r1", seq) for seq in (1, 2, 2, 5, 6, 3)]
    assert verdicts == [
        Verdict(Seen.NEXT),
        Verdict(Seen.NEXT),
        Verdict(Seen.DUPLICATE),
        Verdict(Seen.GAP, 2),
        Verdict(Seen.NEXT),
        Verdict(Seen.DUPLICATE),
    ]
    assert (tracker.run_id, tracker.seq) == ("r1", 6)
    assert tracker.observe("r2", 1) == Verdict(Seen.NEW_RUN)
    assert (tracker.run_id, tracker.seq) == ("r2", 1)


def test_a_host_first_seen_mid_run_is_joined() -> None:
    assert SeqTracker().observe("r", 7) == Verdict(Seen.JOINED)
    assert SeqTracker().observe("r", 1) == Verdict(Seen.NEXT)
    # known from the snapshot's meta record: nothing joined, nothing missed
    assert SeqTracker("r", 6).observe("r", 7) == Verdict(Seen.NEXT)


def test_only_losses_call_for_a_resync() -> None:
    assert [s for s in Seen if Verdict(s).resync] == [Seen.GAP, Seen.NEW_RUN, Seen.JOINED]


@given(st.one_of(st.none(), st.integers(), st.text()), st.one_of(st.none(), st.booleans(), st.text(), st.floats()))
def test_a_message_without_run_id_and_seq_is_untracked_and_moves_nothing(run_id: object, seq: object) -> None:
    tracker = SeqTracker("r", 3)
    assert tracker.observe(run_id, seq) == Verdict(Seen.UNTRACKED)
    assert (tracker.run_id, tracker.seq) == ("r", 3)


@given(st.integers(1, 50), st.data())
def test_re_sent_batches_are_duplicates(sent: int, data: st.DataObject) -> None:
    tracker = SeqTracker()
    for seq in range(1, sent + 1):
        assert tracker.observe("r", seq).seen is Seen.NEXT
    first = data.draw(st.integers(1, sent))
    last = data.draw(st.integers(first, sent))
    assert {tracker.observe("r", seq) for seq in range(first, last + 1)} == {Verdict(Seen.DUPLICATE)}
    assert tracker.observe("r", sent + 1) == Verdict(Seen.NEXT)  # the re-send moved nothing


@given(st.lists(st.integers(1, 20), min_size=1, max_size=30), st.integers(1, 20))
def test_a_new_run_id_resets(old_run: List[int], first_of_new: int) -> None:
    tracker = SeqTracker()
    for seq in old_run:
        tracker.observe("old", seq)
    assert tracker.observe("new", first_of_new) == Verdict(Seen.NEW_RUN)
    assert tracker.observe("new", first_of_new + 1) == Verdict(Seen.NEXT)
    assert tracker.observe("old", max(old_run) + 1) == Verdict(Seen.NEW_RUN)  # back is another change


@given(st.sets(st.integers(2, 200), max_size=60), st.lists(st.integers(1, 200), max_size=40))
def test_a_gap_counts_exactly(delivered_after_1: Set[int], resent: List[int]) -> None:
    """A run's messages 1..top arrive in order, some lost, some re-sent later: the
    missed counts add up to exactly the seqs that never arrived."""
    delivered = [1, *sorted(delivered_after_1)]
    stream = list(delivered)
    for position, seq in enumerate(resent):  # re-sends of seqs already delivered, anywhere later
        index = min(len(stream), position * 3 + 1)
        if seq <= stream[index - 1]:
            stream.insert(index, seq)
    tracker = SeqTracker()
    verdicts = [tracker.observe("r", seq) for seq in stream]
    top = delivered[-1]
    assert sum(v.missed for v in verdicts) == top - len(delivered)
    for seq, verdict in zip(stream, verdicts):
        if verdict.seen is Seen.GAP:
            assert verdict.missed > 0
            assert seq - verdict.missed - 1 in delivered  # counted from the last one that arrived
    assert [v.seen is not Seen.DUPLICATE for v in verdicts].count(True) == len(delivered)


def test_apply_is_an_enum_whose_values_are_the_old_strings() -> None:
    assert issubclass(Apply, enum.Enum)
    assert [a.value for a in Apply] == ["applied", "duplicate", "resync", "ignored"]
    assert Apply.RESYNC == "resync"


def test_fleet_apply_judges_with_the_host_tracker() -> None:
    fleet = Fleet()

    def message(seq: int, run_id: str = "r") -> Dict[str, object]:
        return {"event": "PROCESS_STATE_RUNNING", "host": "h", "name": "p", "run_id": run_id, "seq": seq}

    assert fleet.apply(message(3)) is Apply.RESYNC  # joined mid-run: load the host
    assert fleet.apply(message(4)) is Apply.APPLIED
    assert fleet.apply(message(4)) is Apply.DUPLICATE
    assert fleet.apply(message(9)) is Apply.RESYNC
    assert (fleet.hosts["h"].run_id, fleet.hosts["h"].seq) == ("r", 9)
    assert fleet.apply({**message(10), "event": "SOMETHING_ELSE"}) is Apply.IGNORED
    assert fleet.hosts["h"].seq == 10  # the listener counted it: so does the tracker
