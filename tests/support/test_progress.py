"""raregal.timing.Progress: the share done and the time left of a long step, named after its stage."""

import logging
import threading

import pytest

from raregal import timing
from raregal.timing import Progress, StageTimer, duration


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_time_left_is_the_time_so_far_times_the_work_left_over_the_work_done(caplog):
    clock = Clock()
    with caplog.at_level(logging.INFO, logger="raregal"):
        p = Progress("rows searched", 8_000, every=60, clock=clock)
        clock.now += 30
        p.advance(1_000)  # within the first minute: nothing said
        clock.now += 70
        p.advance(1_000)  # 25 % after 100 s: 300 s left
        clock.now += 10
        p.advance(1_000)  # 10 s since the last line: nothing said
    assert p.lines == [" 25.0 % of 8,000 rows searched, 100 s so far, about 5.0 min left"]
    assert p.lines[0] in caplog.text and p.done == 3_000


def test_a_step_inside_a_timed_stage_is_named_after_it_and_threads_add_up():
    clock = Clock()
    with StageTimer(echo=False).stage("knn"):
        p = Progress("rows searched", 400, every=0, clock=clock)
    assert p.stage == "knn" and Progress("x").stage == ""  # outside any stage: no name

    def work():
        for _ in range(50):
            p.advance(1)

    threads = [threading.Thread(target=work) for _ in range(8)]
    clock.now += 1
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert p.done == 400 and p.lines[-1].startswith("knn        100.0 % of 400 rows searched")
    assert p.lines[-1].endswith("about 0 s left")


def test_without_a_total_only_what_is_done_is_said():
    clock = Clock()
    p = Progress("spanning tree: components left", every=0, clock=clock)
    clock.now += 7200
    p.update(1234)
    assert p.lines == ["spanning tree: components left: 1,234, 2.0 h so far"]


@pytest.mark.parametrize("seconds, text", [(42.4, "42 s"), (119, "119 s"), (750, "12.5 min"), (11160, "3.1 h")])
def test_durations_read_as_a_person_reads_them(seconds, text):
    assert duration(seconds) == text


def test_progress_lines_wait_a_minute_by_default():
    assert timing.PROGRESS_EVERY == 60.0 and Progress("x").every == 60.0
