"""Background processes: spawned in their own group, stopped with every child, errors that name the log."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

from infra.services.base import ServiceError
from infra.services.kafka import java_major_version
from infra.services.process import ManagedProcess, group_cpu_seconds, is_alive, process_cpu_seconds


def test_stop_ends_the_process_and_its_children(tmp_path: Path) -> None:
    process = ManagedProcess("sleeper", tmp_path / "run" / "sleeper.pid", tmp_path / "logs" / "sleeper.log")
    pid = process.spawn(["bash", "-c", "sleep 300 & echo child=$!; wait"])
    deadline = time.monotonic() + 5
    while not (found := re.search(r"child=(\d+)", process.log_tail())) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert found, process.log_tail()
    child = int(found.group(1))
    assert process.pid() == pid and is_alive(child)

    assert process.stop() is True
    assert not is_alive(pid) and not is_alive(child)
    assert process.pid() is None
    assert process.stop() is False


def test_a_process_ignoring_sigterm_is_killed(tmp_path: Path) -> None:
    process = ManagedProcess("stubborn", tmp_path / "stubborn.pid", tmp_path / "stubborn.log")
    pid = process.spawn(["bash", "-c", "trap '' TERM; echo ready; while true; do sleep 0.1; done"])
    while "\nready" not in process.log_tail():
        time.sleep(0.05)
    started = time.monotonic()
    process.stop(signal.SIGTERM, timeout=1)
    assert not is_alive(pid)
    assert time.monotonic() - started < 10


def test_a_stale_pid_file_is_ignored(tmp_path: Path) -> None:
    pid_file = tmp_path / "gone.pid"
    pid_file.write_text("999999999\n")
    assert ManagedProcess("gone", pid_file, tmp_path / "gone.log").pid() is None
    assert not pid_file.exists()


def test_service_error_names_cause_and_log(tmp_path: Path) -> None:
    error = ServiceError("kafka", "JDK missing", tmp_path / "kafka.log", "line one\nline two")
    text = str(error)
    assert text.startswith("kafka: JDK missing")
    assert f"log: {tmp_path / 'kafka.log'}" in text
    assert "    line two" in text


def test_java_version_is_read_from_the_real_jdk() -> None:
    import shutil

    java = shutil.which("java")
    assert java is not None
    assert java_major_version(java) >= 17


def test_the_cpu_time_of_a_process_group_counts_the_work_of_its_children(tmp_path: Path) -> None:
    process = ManagedProcess("burner", tmp_path / "run" / "burner.pid", tmp_path / "logs" / "burner.log")
    # A shell whose child burns a second of CPU and then waits: the group's time is the child's.
    burn = "import time\nwhile time.process_time() < 1: pass\ntime.sleep(60)"
    pid = process.spawn(["bash", "-c", f"python3 -c '{burn}'; true"])
    try:
        deadline = time.monotonic() + 20
        while group_cpu_seconds(pid) < 0.9 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert group_cpu_seconds(pid) >= 0.9
        assert process_cpu_seconds(pid) < 0.3  # the shell itself only waits
    finally:
        process.stop()
