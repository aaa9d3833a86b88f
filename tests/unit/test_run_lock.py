"""One process per stage folder: a second is refused with the holder's pid and host; a dead holder's lock is stale."""

import json
import os
import signal
import socket

import pytest

from dreamdiffusion import run_lock
from dreamdiffusion.run_lock import RunLockedError


def test_a_second_process_is_refused_with_the_holders_pid_and_host(tmp_path, hold_lock):
    holder = hold_lock(tmp_path)
    with pytest.raises(RunLockedError) as info:
        run_lock.acquire(tmp_path)
    message = str(info.value)
    assert f"pid {holder.pid} on host {socket.gethostname()}" in message
    assert "--run_dir" in message and str(tmp_path) in message


def test_the_lock_of_a_killed_run_is_taken_over_and_released_on_exit(tmp_path, hold_lock):
    holder = hold_lock(tmp_path)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    said = []
    lock = run_lock.acquire(tmp_path, log=said.append)
    assert len(said) == 1 and f"pid {holder.pid}" in said[0] and "gone" in said[0]
    assert json.loads((tmp_path / run_lock.LOCK_NAME).read_text())["pid"] == os.getpid()
    lock.release()
    assert not (tmp_path / run_lock.LOCK_NAME).exists()
    run_lock.acquire(tmp_path).release()  # free again


def test_a_released_lock_can_be_taken_by_the_next_run_at_once(tmp_path):
    for _ in range(3):
        lock = run_lock.acquire(tmp_path)
        assert json.loads((tmp_path / run_lock.LOCK_NAME).read_text())["pid"] == os.getpid()
        lock.release()
        assert not (tmp_path / run_lock.LOCK_NAME).exists()
