"""What differs between the Airflow releases we support (pyproject's range; tests/test_compat.py runs the
lowest and the newest): one home, so a release's difference is not a branch spread over the package."""

from __future__ import annotations


def warm_task_client_ssl_context() -> None:
    """Make the Execution API client's SSL context once, in this process, so forked workers inherit it.

    Airflow 3.3 caches the context per process (``Client._get_ssl_context_cached``); each task's
    supervisor made it again (~25 ms of CPU) in its new worker. Airflow 3.2 has no such cache: nothing to
    warm there."""
    from airflow.sdk.api import client

    if not hasattr(client, "API_SSL_CA_FILE_PATH"):  # (its value may be None: no CA file configured)
        return
    client.Client._get_ssl_context_cached(client.API_SSL_CA_FILE_PATH, client.API_SSL_CERT_PATH)
