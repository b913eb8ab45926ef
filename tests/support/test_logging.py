"""raregal's log lines go to the stderr of the moment, also after a caller swapped and closed the old one."""

import io
import logging
import sys

from raregal.timing import setup_logging


def test_log_lines_follow_a_swapped_stderr(monkeypatch):
    first, second = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    setup_logging()
    logging.getLogger("raregal").info("one")
    monkeypatch.setattr(sys, "stderr", second)
    first.close()  # as pytest's capsys does with the stream the handler first saw
    logging.getLogger("raregal").info("two")
    assert second.getvalue() == "two\n"
