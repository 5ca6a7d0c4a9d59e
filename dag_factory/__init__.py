"""dag-factory: notebook job specs in, Apache Airflow DAGs out."""

DISTRIBUTION = "dag-factory-notebooks"  # the name pip knows the package by (pyproject.toml)
