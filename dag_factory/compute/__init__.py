"""The compute each backend runs notebooks on, and its life cycle, without Airflow.

- sagemaker: a notebook instance (boto only), shared by the Airflow operators and the orphan sweeper;
- workspace: the local backend's "instance", a work directory with its own virtualenv;
- naming: instance names and tags AWS accepts.
"""
