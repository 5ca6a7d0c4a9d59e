"""Delivery stage: load the files notebooks wrote into a warehouse table or an S3 prefix.

Plain Python, no Airflow import at module load (the hooks are imported where used), so the Airflow
task calls ``deliver(...)`` from a PythonOperator with JSON-able arguments.
"""

from dag_factory.deliver.dispatch import deliver
from dag_factory.deliver.errors import DeliveryError
from dag_factory.deliver.partition import Partition

__all__ = ["DeliveryError", "Partition", "deliver"]
