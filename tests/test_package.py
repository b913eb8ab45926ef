"""The package's layout: every command built in, and the CPU budget in one neutral module."""

import subprocess
import sys

from raregal import workers


def test_every_command_is_built_in():
    from raregal.cli import COMMANDS, build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    assert list(sub.choices) == COMMANDS  # no command silently left out of an install


def test_embed_evaluate_and_train_share_the_workers_module():
    import raregal.embedding.local
    import raregal.encoder.train

    assert raregal.embedding.local.default_workers is raregal.encoder.train.default_workers is workers.default_workers
    assert 0 <= workers.default_workers() <= min(4, workers.usable_cores())
    assert 1 <= workers.default_threads(workers.default_workers()) <= workers.usable_cores()


def test_workers_imports_nothing_heavy():
    code = ("import sys, raregal.workers; heavy = sorted(m for m in ('torch', 'numba', 'raregal.encoder.train') "
            "if m in sys.modules); print(heavy); sys.exit(1 if heavy else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
