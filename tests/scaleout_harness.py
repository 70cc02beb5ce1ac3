"""A real Redis (Debian's redis-server on 127.0.0.1, a free port, no disk) and worker processes
(`webui.py --worker`, CPU, one torch thread each) for the scale-out tests and bench."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def redis_server(password: str | None = None) -> Iterator[str]:
    """Yields the broker URL of a fresh redis-server (stopped afterwards)."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server; .ci/run does)")
    port = free_port()
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    if password:
        command += ["--requirepass", password]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)
        auth = f":{password}@" if password else ""
        yield f"redis://{auth}127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


@dataclass
class WorkerProcess:
    worker_id: str
    proc: subprocess.Popen[str]
    log: Path

    def kill(self) -> None:
        """kill -9: no warm shutdown, no goodbye to Redis."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def start_worker(url: str, data_dir: Path, worker_id: str, *flags: str) -> WorkerProcess:
    """`webui.py --worker` over `data_dir` with one torch thread; returns at once (it joins later)."""
    env = dict(
        os.environ,
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        OMP_WAIT_POLICY="PASSIVE",
        PYTHONUNBUFFERED="1",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
    )
    log = data_dir / f"{worker_id}.log"
    handle: IO[str] = log.open("w")
    command = [sys.executable, "webui.py", "--worker", "--queue", url, "--data-dir", str(data_dir)]
    command += ["--worker-id", worker_id, "--skip-install", *flags]
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=handle, stderr=subprocess.STDOUT, text=True)
    handle.close()
    return WorkerProcess(worker_id, proc, log)


def stop_all(workers: Sequence[WorkerProcess]) -> None:
    for worker in workers:
        worker.stop()
