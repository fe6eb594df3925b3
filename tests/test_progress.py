"""Progress bars redraw in place on a terminal and rarely into a pipe or log, where every redraw stays a line."""

import io

from snakeweb.progress import PIPE_INTERVAL, TERMINAL_INTERVAL, tqdm


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_pipe_gets_few_redraws_and_always_the_last_state():
    pipe = io.StringIO()
    with tqdm(total=1000, desc="train", file=pipe) as bar:
        for _ in range(1000):
            bar.update(1)
    assert bar.mininterval == PIPE_INTERVAL
    assert "1000/1000" in pipe.getvalue().split("\r")[-1]  # the last state is written however few the redraws


def test_a_terminal_redraws_twice_a_second():
    with tqdm(total=3, file=Terminal()) as bar:
        assert bar.mininterval == TERMINAL_INTERVAL
