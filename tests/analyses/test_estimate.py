"""The time estimate before a long run: the first batch timed alone, outputs unchanged."""

from __future__ import annotations

from transfer_neurons.analyses.estimate import duration, with_estimate


def test_with_estimate_parts_join_to_one_call():
    calls, said = [], []

    def step(items):
        calls.append(list(items))
        return [x * 2 for x in items]

    parts = with_estimate(step, [1, 2, 3, 4, 5], 2, 3, said.append, what="questions")
    assert calls == [[1, 2], [3, 4, 5]] and [x for part in parts for x in part] == [2, 4, 6, 8, 10]
    assert len(said) == 1 and said[0].startswith("about 5 questions x 3 conditions; estimated ")
    assert with_estimate(step, [1, 2, 3], 2, 3, None) == [[2, 4, 6]]  # no estimate wanted: one call
    assert with_estimate(step, [1], 2, 1, said.append) == [[2]] and len(said) == 1  # one batch: nothing to say
    assert [duration(s) for s in (40, 210, 7560)] == ["40 s", "3.5 min", "2.1 h"]
