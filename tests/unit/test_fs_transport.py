"""deployments/intake/fs_transport.py: the embedded broker keeps a case until it is acknowledged (real kombu, real files)."""

from __future__ import annotations

import os

from kombu import Connection, Exchange, Queue

from deployments.intake import fs_transport


def connection(folder):
    queue_dir = folder / "queue"
    queue_dir.mkdir(parents=True, exist_ok=True)
    (folder / "control").mkdir(exist_ok=True)
    return queue_dir, Connection("chsfs://", transport_options={
        "data_folder_in": str(queue_dir), "data_folder_out": str(queue_dir), "control_folder": str(folder / "control")})


def test_a_read_case_stays_in_flight_until_acked_and_a_dead_readers_cases_come_back(tmp_path):
    queue_dir, conn = connection(tmp_path)
    queue = Queue("q", Exchange("q", type="direct"), routing_key="q")
    with conn:
        producer = conn.Producer(serializer="json")
        for i in range(2):
            producer.publish({"i": i}, exchange=queue.exchange, routing_key="q", declare=[queue])
        simple = conn.SimpleQueue(queue)
        first = simple.get(timeout=1)
        assert len(os.listdir(fs_transport.inflight_dir(queue_dir))) == 1
        first.ack()
        assert os.listdir(fs_transport.inflight_dir(queue_dir)) == []
        simple.get(timeout=1)  # taken, never acknowledged: its reader "dies" here
        assert len(os.listdir(fs_transport.inflight_dir(queue_dir))) == 1
        assert not [n for n in os.listdir(queue_dir) if n.endswith(".q.msg")]
        # A new consumer starting after that reader was killed puts its case back on the queue.
        assert fs_transport.recover_inflight(queue_dir) == 1
        assert len([n for n in os.listdir(queue_dir) if n.endswith(".q.msg")]) == 1
        assert os.listdir(fs_transport.inflight_dir(queue_dir)) == []

