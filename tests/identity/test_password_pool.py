"""Password hashing threads run at a lower scheduling priority than the server's other threads."""

import os
import sys
import threading

import pytest

from llero.identity import passwords


@pytest.mark.skipif(sys.platform != "linux", reason="per-thread niceness is a Linux feature")
def test_hashing_threads_run_nicer() -> None:
    caller = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    hashing = passwords._pool.submit(
        lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    ).result()

    assert hashing == passwords.HASHING_NICENESS
    assert hashing > caller
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == caller
