"""Progress bars redraw in place on a terminal and rarely into a pipe or log, where every redraw stays a line."""

import io

from snakeweb.progress import PIPE_INTERVAL, TERMINAL_INTERVAL, tqdm


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_pipe_gets_few_redraws_and_always_the_last_state():
    pipe = io.StringIO()
    with tqdm(total=1000, desc="train", file=pipe) as bar:
        for i in range(1000):
            bar.update(1)
            bar.set_postfix(loss=f"{1 / (i + 1):.3f}")  # tqdm's own set_postfix redraws at every call
    assert bar.mininterval == PIPE_INTERVAL
    redraws = pipe.getvalue().split("\r")
    assert "1000/1000" in redraws[-1]  # the last state is written however few the redraws
    assert len(redraws) < 100  # not one per update (a 1000-update loop that took 5 s per 10 updates would fail this)


def test_a_terminal_redraws_twice_a_second():
    with tqdm(total=3, file=Terminal()) as bar:
        assert bar.mininterval == TERMINAL_INTERVAL
