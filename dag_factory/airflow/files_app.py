"""The api-server's route to a local file a task linked: the local backend's executed notebooks, notebook
sources and run reports. Airflow 3's UI shows only http(s) and same-origin links, never `file://` ones,
so a local task's extra links point here (`local_file_url`), relative to the UI's own origin.

The plugin mounts the app at `/dag-factory` (only the api-server builds it). A request names the task
instance and the file; the file is served only if one of the task's own extra links, computed by its
worker and kept in XCom, is exactly this URL, the file is a regular file, and the user may read the
DAG's task instances: nothing else on the api-server's disk can be reached through it.
"""

# no `from __future__ import annotations`: FastAPI reads the route's annotations, which name objects
# imported inside create_app
import mimetypes
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

URL_PREFIX = "/dag-factory"
_ROUTE = "/files/{dag_id}/{run_id}/{task_id}"


def _base_path() -> str:
    """The path of the api-server's `[api] base_url` (Airflow behind a path prefix), else ''."""
    try:
        from airflow.configuration import conf

        base_url = conf.get("api", "base_url", fallback="") or ""
    except Exception:  # a worker without the api section: links relative to the root
        base_url = ""
    return urlsplit(base_url).path.rstrip("/")


def _task_route(dag_id: str, run_id: str, task_id: str) -> str:
    """The route's path for one task instance (each part quoted: run ids hold ':' and '+')."""
    parts = {"dag_id": dag_id, "run_id": run_id, "task_id": task_id}
    return URL_PREFIX + _ROUTE.format(**{name: quote(value, safe="") for name, value in parts.items()})


def local_file_url(dag_id: str, run_id: str, task_id: str, path: str) -> str:
    """The UI link to a local file a task wrote or read (relative: same origin as the UI)."""
    return f"{_base_path()}{_task_route(dag_id, run_id, task_id)}?path={quote(path, safe='')}"


def linked_paths(link_urls: list[Any], dag_id: str, run_id: str, task_id: str) -> set[str]:
    """The local files the task's links point at (links to elsewhere, or to another task, are left out)."""
    route = _task_route(dag_id, run_id, task_id)
    paths = set()
    for url in link_urls:
        if not isinstance(url, str):
            continue
        parts = urlsplit(url)
        if parts.scheme or parts.netloc or not parts.path.endswith(route):
            continue
        paths.update(parse_qs(parts.query).get("path", []))
    return paths


def create_app() -> Any:
    """The FastAPI app the plugin mounts (built on the api-server only: workers never import FastAPI)."""
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
    from airflow.api_fastapi.common.db.common import SessionDep
    from airflow.api_fastapi.core_api.security import requires_access_dag
    from airflow.models.xcom import XComModel
    from fastapi import Depends, FastAPI, HTTPException, status
    from fastapi.responses import FileResponse
    from sqlalchemy import select

    from dag_factory.airflow.links import LINKS

    app = FastAPI(title="dag-factory: local files linked by tasks")
    link_keys = [link.xcom_key for link in LINKS.values()]

    @app.get(_ROUTE, dependencies=[Depends(requires_access_dag("GET", DagAccessEntity.TASK_INSTANCE))])
    def linked_file(dag_id: str, run_id: str, task_id: str, path: str, session: SessionDep) -> FileResponse:
        rows = session.execute(
            select(XComModel.value).where(
                XComModel.dag_id == dag_id,
                XComModel.run_id == run_id,
                XComModel.task_id == task_id,
                XComModel.key.in_(link_keys),
            )
        ).all()
        urls = [XComModel.deserialize_value(row) for row in rows]
        file = Path(path)
        if path not in linked_paths(urls, dag_id, run_id, task_id) or not file.is_file():
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such file linked by this task")
        kind = "application/json" if file.suffix == ".ipynb" else mimetypes.guess_type(file.name)[0]
        return FileResponse(file, media_type=kind or "application/octet-stream")

    return app
