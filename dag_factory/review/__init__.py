"""The review loop: notebook inspection, plan rendering, diff, graph and deploy (no Airflow import)."""
