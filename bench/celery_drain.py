"""Celery's drain of N no-op tasks on the same RabbitMQ, for docs/benchmarks.md.

Enqueues N no-op tasks on a fresh queue (persistent messages, as PySaaS publishes), then starts a
worker with acks_late (ack after the task ran, PySaaS's guarantee) and measures how long it takes
to drain them, for the prefork and threads pools. Results go to stdout.
"""

import os
import subprocess
import sys
import time
import uuid

from celery import Celery

BROKER = os.environ.get("CELERY_BROKER", "amqp://guest:guest@127.0.0.1:5672//")
N = int(os.environ.get("N", "20000"))
CONCURRENCY = int(os.environ.get("CONCURRENCY", "64"))

app = Celery("bench", broker=BROKER)
app.conf.update(
    task_acks_late=True,
    worker_prefetch_multiplier=4,
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
)


@app.task(name="noop")
def noop():
    return None


def drain(pool: str) -> float:
    queue = f"celerybench-{uuid.uuid4().hex[:8]}"
    with app.producer_or_acquire() as producer:
        for _ in range(N):
            noop.apply_async(queue=queue, producer=producer)
    concurrency = str(CONCURRENCY if pool == "threads" else 2)
    start = time.monotonic()
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "celery_drain", "worker", "-Q", queue, "-P", pool,
         "-c", concurrency, "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "WARNING"],
        cwd=os.path.dirname(os.path.abspath(__file__)),
    )
    try:
        with app.connection_for_write() as conn:
            channel = conn.default_channel
            while True:
                time.sleep(0.2)
                _, count, _ = channel.queue_declare(queue=queue, passive=True)
                if count == 0:
                    break
        elapsed = time.monotonic() - start
    finally:
        worker.terminate()
        worker.wait(timeout=60)
        with app.connection_for_write() as conn:
            conn.default_channel.queue_delete(queue=queue)
    # Worker start-up is part of `elapsed` (as a PySaaS worker's is part of its drain figure).
    return N / elapsed


if __name__ == "__main__":
    for pool in ("prefork", "threads"):
        rate = drain(pool)
        print(f"celery {pool:8s} drain: {rate:9.0f} tasks/s (N={N})", flush=True)
