"""``[core] hostname_callable`` of the test cluster's Celery workers.

In production every worker is its own machine, so Airflow's default (the FQDN) tells them apart in
``task_instance.hostname``. The test cluster's workers share this machine: each gets its own name in
``$CLUSTER_WORKER_NAME`` and reports it through this callable.
"""

from __future__ import annotations

import os

VARIABLE = "CLUSTER_WORKER_NAME"


def hostname() -> str:
    return os.environ[VARIABLE]
