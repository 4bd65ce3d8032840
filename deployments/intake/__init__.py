"""The durable asynchronous intake: /tasks/* and /classifier/* on a Celery queue.

- ``producer``: ``IntakeStore``, the ingress's side (submit, read, refuse when full); Ray-free.
- ``consumer``: the ``IntakeConsumer`` deployment (Ray's ``task_consumer``), which classifies queued cases.
- ``fs_transport``: the embedded broker, a kombu filesystem transport (``chsfs://``) that keeps a case
  until it is acknowledged; Ray-free.

The Ray-free task logic (ids, records, views, OpenCHS's task shapes) is ``deployments/core/tasks.py``.
"""
