"""The time estimate of a long run: the progress bar says once, after the first batch, what the whole
run takes on this machine; nothing without progress."""

from __future__ import annotations

from transfer_neurons.hooks.generation import EstimatingBar, duration


def test_the_bar_estimates_once_after_the_first_batch(capsys):
    bar = EstimatingBar({"normal": ["a"] * 5, "deactivated": ["b"] * 5}, "QA", progress=True)
    bar.update(2)
    bar.update(3)
    bar.close()
    said = [line for line in capsys.readouterr().err.splitlines() if "estimated" in line]
    assert len(said) == 1 and said[0].startswith("about 5 prompts x 2 conditions; estimated ")
    assert "from the first batch of 2" in said[0]
    quiet = EstimatingBar({"normal": ["a"] * 5}, "QA", progress=False)
    quiet.update(2)
    quiet.close()
    assert "estimated" not in capsys.readouterr().err
    assert [duration(s) for s in (40, 210, 7560)] == ["40 s", "3.5 min", "2.1 h"]
