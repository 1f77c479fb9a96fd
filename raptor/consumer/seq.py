"""Where one host's listener is: its run and the last seq seen, and what a new message means.

Every message a listener publishes carries its ``run_id`` (new at every listener start)
and a ``seq`` that counts 1, 2, 3... within that run. A consumer that remembers the last
``(run_id, seq)`` of a host can tell of each new message whether it is the next one, a
re-sent one (delivery is at least once), one after lost messages (and how many), or the
start of a new run. :class:`SeqTracker` is that memory for one host; it does no I/O.
The fleet view (:meth:`raptor.consumer.fleet.Fleet.apply`) and ``raptor tail`` both
judge messages with it.
"""

from __future__ import annotations

import enum
from typing import Any, NamedTuple, Optional


class Seen(enum.Enum):
    """What a message is, given what was seen of its host before."""

    NEXT = "next"  # the seq after the last one (or seq 1 of a host seen for the first time)
    DUPLICATE = "duplicate"  # a seq already seen: a re-sent batch (delivery is at least once)
    GAP = "gap"  # seqs of this run never arrived: Verdict.missed of them
    NEW_RUN = "new_run"  # another run_id: the listener restarted and counts from 1 again
    JOINED = "joined"  # a host's first message seen, mid-run: what came before is unknown
    UNTRACKED = "untracked"  # no run_id/seq (Velociraptor's own publisher): nothing to tell


class Verdict(NamedTuple):
    seen: Seen
    missed: int = 0  # messages of this run lost before this one; only a GAP has any

    @property
    def resync(self) -> bool:
        """Whether a consumer that keeps the host's state must reload it from the snapshot:
        messages were lost (a gap), the previous run's last ones may have been (a new run),
        or nothing before this one is known (joined mid-run)."""
        return self.seen in (Seen.GAP, Seen.NEW_RUN, Seen.JOINED)


# The verdicts without a count, made once: a consumer catching up judges 100,000 a second.
_NEXT = Verdict(Seen.NEXT)
_DUPLICATE = Verdict(Seen.DUPLICATE)
_NEW_RUN = Verdict(Seen.NEW_RUN)
_JOINED = Verdict(Seen.JOINED)
_UNTRACKED = Verdict(Seen.UNTRACKED)


class SeqTracker:
    """The last ``(run_id, seq)`` seen of one host; :meth:`observe` judges the next message."""

    __slots__ = ("run_id", "seq")

    def __init__(self, run_id: Optional[str] = None, seq: int = 0) -> None:
        self.run_id = run_id  # None: nothing known of this host yet
        self.seq = seq

    def __repr__(self) -> str:
        return f"SeqTracker(run_id={self.run_id!r}, seq={self.seq})"

    def observe(self, run_id: Any, seq: Any) -> Verdict:
        """Judge a message's ``run_id`` and ``seq`` (as decoded from its JSON) and move on
        to it, unless it is a duplicate or carries none."""
        if type(seq) is not int or not isinstance(run_id, str):  # type(): a bool is no seq
            return _UNTRACKED
        if run_id == self.run_id:
            if seq <= self.seq:
                return _DUPLICATE  # the position stays: a re-sent batch moves nothing
            verdict = _NEXT if seq == self.seq + 1 else Verdict(Seen.GAP, seq - self.seq - 1)
        elif self.run_id is not None:
            verdict = _NEW_RUN
        else:
            verdict = _NEXT if seq == 1 else _JOINED
        self.run_id, self.seq = run_id, seq
        return verdict
