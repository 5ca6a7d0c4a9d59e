"""One client for the REST API of the Airflow api-servers the tests start (the simple auth manager with
every user an admin: no token)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any


def quote(part: str) -> str:
    """One path segment of a REST URL (run ids hold ':' and '+')."""
    return urllib.parse.quote(part, safe="")


@dataclass(frozen=True)
class AirflowApi:
    """Calls to ``url`` (the api-server's base URL; paths start with /api/v2)."""

    url: str
    timeout: float = 60
    # on SQLite Airflow answers a write that met the database lock (a backfill's creation while the
    # scheduler writes) with 503 "Database is locked": asked again for this long
    locked_retry_s: float = 0.0
    # a loaded 2-core machine left an api-server silent for > 30 s: a GET that times out is asked again
    get_attempts: int = 1

    def answer(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """(HTTP status, decoded JSON body or None); an error status raises urllib's HTTPError."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        deadline = time.monotonic() + self.locked_retry_s
        attempt = 0
        while True:
            attempt += 1
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                    status, text = int(answer.status), answer.read()
                return status, json.loads(text) if text else None
            except urllib.error.HTTPError as error:
                if error.code != 503 or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)  # the lock is held by one short transaction of the scheduler's
            except (TimeoutError, urllib.error.URLError):
                if method != "GET" or attempt >= self.get_attempts:
                    raise

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """The decoded JSON body of one call (None when empty)."""
        return self.answer(method, path, body)[1]

    def read(self, path: str) -> bytes:
        """The raw body of a GET (a file the api-server serves, not JSON)."""
        with urllib.request.urlopen(self.url + path, timeout=self.timeout) as answer:
            body: bytes = answer.read()
            return body
