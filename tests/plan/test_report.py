"""The run report model and its HTML (no Airflow): statuses, failures, rows, hours and cost per value."""

from __future__ import annotations

import html
import json
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from dag_factory.plan.report import (
    CREATED_XCOM,
    DELETED_XCOM,
    build_report,
    failing_cell,
    render_html,
    with_earlier,
)

RUN = "manual__2026-01-05T00:00:00+00:00"
FOLDER = f"s3://out/churn/{RUN}"


def _group(value: str) -> dict[str, Any]:
    def task(name: str, kind: str, **extra: Any) -> dict[str, Any]:
        return {"task_id": f"{value}.{name}", "kind": kind, **extra}

    notebook = {"value": value, "notebook": "nb/train.ipynb", "executed": f"{FOLDER}/{value}/train.ipynb"}
    return {
        "group_id": value,
        "values": [value],
        "tasks": [
            task("create_instance", "create_instance"),
            task("resolve_ip", "resolve_ip"),
            task("prepare", "prepare"),
            task("nb_train", "notebook", **notebook, html=f"{FOLDER}/{value}/train.html"),
            task("deliver_scores", "deliver", value=value, target="postgres:ml.scores"),
            task("stop_instance", "stop_instance"),
            task("delete_instance", "delete_instance"),
        ],
    }


INPUTS = {
    "dag_id": "churn",
    "env": "preprod",
    "backend": "sagemaker",
    "fan_out": "country",
    "folder": FOLDER,
    "estimate": {
        "instance_type": "ml.t3.medium",
        "instances": 2,
        "instance_hours_max": 8.0,
        "usd_per_hour": 0.05,
        "cost_max_usd": 0.4,
    },
    "groups": [_group("de"), _group("fr")],
}
FAILED_NOTEBOOK = {
    "cells": [
        {"cell_type": "code", "outputs": [{"output_type": "stream", "text": "ok"}]},
        {"cell_type": "markdown"},
        {"cell_type": "code", "outputs": [{"output_type": "error", "ename": "KeyError", "evalue": "'fr'"}]},
    ]
}


def _report() -> dict[str, Any]:
    tis = {f"{v}.{t}": {"state": "success", "duration": 2.5} for v in ("de", "fr") for t in
           ("create_instance", "resolve_ip", "prepare", "nb_train", "deliver_scores", "stop_instance",
            "delete_instance")}  # fmt: skip
    tis["fr.nb_train"] = {"state": "failed", "duration": 7.0}
    tis["fr.deliver_scores"] = {"state": "upstream_failed", "duration": None}
    xcoms = {
        "de.create_instance": {CREATED_XCOM: "2026-01-05T04:00:00+00:00"},
        "de.delete_instance": {DELETED_XCOM: "2026-01-05T04:30:00+00:00"},
        "fr.create_instance": {CREATED_XCOM: "2026-01-05T04:00:00+00:00"},
        "fr.delete_instance": {DELETED_XCOM: "2026-01-05T05:00:00+00:00"},
        "de.deliver_scores": {"return_value": 800},
        "fr.deliver_scores": {"return_value": None},
    }
    return build_report(INPUTS, RUN, tis, xcoms, {"fr.nb_train": FAILED_NOTEBOOK})


def test_failing_cell_names_the_first_error() -> None:
    # the contract names it: cells counted from 1 as in the notebook the data scientist wrote
    assert failing_cell(FAILED_NOTEBOOK) == "cell 3: KeyError: 'fr'"
    assert failing_cell({"cells": []}) == ""


def test_report_per_value_and_total() -> None:
    report = _report()
    assert report["status"] == "failed"
    de, fr = report["values"]
    assert (de["value"], de["status"], de["failure"]) == ("de", "success", "")
    assert (fr["value"], fr["status"]) == ("fr", "failed")
    assert fr["failure"] == "fr.nb_train: cell 3: KeyError: 'fr'"
    assert de["rows_delivered"] == {"postgres:ml.scores": 800}
    assert fr["rows_delivered"] == {"postgres:ml.scores": None}
    assert [t["task_id"] for t in fr["tasks"]] == [
        "fr.create_instance", "fr.resolve_ip", "fr.prepare", "fr.nb_train", "fr.deliver_scores",
        "fr.stop_instance", "fr.delete_instance",
    ]  # fmt: skip
    assert fr["tasks"][3] == {"task_id": "fr.nb_train", "state": "failed", "duration_s": 7.0}
    assert (de["instance_hours"], de["cost_usd"]) == (0.5, 0.025)
    assert (fr["instance_hours"], fr["cost_usd"]) == (1.0, 0.05)
    assert report["total"] == {"instance_hours": 1.5, "cost_usd": 0.075}
    assert report["estimate"]["cost_max_usd"] == 0.4
    assert fr["notebooks"] == [{"notebook": "nb/train.ipynb", "html": f"{FOLDER}/fr/train.html"}]


def test_instance_never_created_costs_nothing_and_a_task_never_run_says_so() -> None:
    report = build_report(INPUTS, RUN, {}, {}, {})
    de = report["values"][0]
    assert de["instance_hours"] is None and de["cost_usd"] is None
    assert de["status"] == "failed" and de["failure"] == "de.create_instance: not run"
    assert report["total"] == {"instance_hours": 0.0, "cost_usd": 0.0}


def test_a_failed_delete_names_the_instance_that_may_be_left_and_fails_the_report() -> None:
    tis = {f"{v}.{t}": {"state": "success", "duration": 1.0} for v in ("de", "fr") for t in
           ("create_instance", "resolve_ip", "prepare", "nb_train", "deliver_scores", "stop_instance",
            "delete_instance")}  # fmt: skip
    tis["fr.delete_instance"] = {"state": "failed", "duration": 3.0}
    instances = {"de": "nb-churn-de-0123456789", "fr": "nb-churn-fr-9876543210"}
    report = build_report(INPUTS, RUN, tis, {}, {}, instances)
    assert report["left_instances"] == [
        {"group": "fr", "instance": "nb-churn-fr-9876543210", "delete_instance": "failed"}
    ]
    assert report["status"] == "failed"
    assert [v["status"] for v in report["values"]] == ["success", "success"]  # the work itself succeeded
    page = render_html(report)
    assert "<li>nb-churn-fr-9876543210 (fr): delete_instance failed</li>" in page
    assert "nb-churn-de-0123456789" not in page


def test_the_report_says_what_a_manual_run_chose_and_overrode() -> None:
    inputs = {**INPUTS, "form": {"values": ["de", "fr"], "lookback_days": 90, "max_depth": None}}
    conf = {"values": ["fr"], "lookback_days": 30, "max_depth": None}
    report = build_report(inputs, RUN, {}, {}, {}, conf=conf)
    assert (report["chosen_values"], report["overrides"]) == (["fr"], {"lookback_days": 30})
    assert "<p>this run was triggered with values: fr; lookback_days = 30</p>" in render_html(report)
    scheduled = build_report(inputs, RUN, {}, {}, {}, conf={})
    assert (scheduled["chosen_values"], scheduled["overrides"]) == (None, {})
    assert "triggered with" not in render_html(scheduled)


def test_a_report_written_again_keeps_what_each_earlier_one_said() -> None:
    first = with_earlier(_report(), None)
    assert first["earlier"] == []
    ok = {f"{v}.{t}": {"state": "success", "duration": 1.0} for v in ("de", "fr") for t in
          ("create_instance", "resolve_ip", "prepare", "nb_train", "deliver_scores", "stop_instance",
           "delete_instance")}  # fmt: skip
    repaired = with_earlier(build_report(INPUTS, RUN, ok, {}, {}), json.loads(json.dumps(first)))
    assert repaired["status"] == "success"
    failed_then = {"fr": "fr.nb_train: cell 3: KeyError: 'fr'"}
    assert repaired["earlier"] == [{"status": "failed", "failed": failed_then}]
    again = with_earlier(build_report(INPUTS, RUN, ok, {}, {}), repaired)
    assert [x["status"] for x in again["earlier"]] == ["failed", "success"]
    page = render_html(again)
    assert "<li>failed; fr: fr.nb_train: cell 3: KeyError: &#x27;fr&#x27;</li><li>success</li>" in page


def test_nothing_is_left_when_create_never_ran_or_delete_succeeded() -> None:
    assert build_report(INPUTS, RUN, {}, {}, {})["left_instances"] == []
    assert _report()["left_instances"] == []
    assert "may be left" not in render_html(_report())


class _Cells(HTMLParser):
    """Rows of the first table as lists of cell texts, and every link."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.links: list[str] = []
        self.tables = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.tables += 1
        elif tag == "tr" and self.tables == 1:
            self.rows.append([])
        elif tag in ("td", "th") and self.tables == 1:
            self.rows[-1].append("")
        elif tag == "a":
            self.links += [v for k, v in attrs if k == "href" and v]

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self.tables += 1

    def handle_data(self, data: str) -> None:
        if self.tables == 1 and self.rows and self.rows[-1]:
            self.rows[-1][-1] = (self.rows[-1][-1] + data).strip()


@pytest.mark.parametrize("value", ["de", "fr"])
def test_html_shows_every_value(value: str) -> None:
    parser = _Cells()
    parser.feed(render_html(_report()))
    header, *rows = parser.rows
    assert header == [
        "country", "status", "tasks", "failure", "rows delivered", "rendered notebooks",
        "injected parameters", "instance-hours", "cost",
    ]  # fmt: skip
    row = next(r for r in rows if r[0] == value)
    if value == "fr":
        assert row[1] == "failed" and row[3] == "fr.nb_train: cell 3: KeyError: 'fr'"
        assert row[4] == "postgres:ml.scores: -"
        assert row[7:] == ["1.000 h", "$0.05"]
    else:
        assert row[1] == "success" and row[4] == "postgres:ml.scores: 800"
        assert row[7:] == ["0.500 h", "$0.03"]
    assert f"{FOLDER}/{value}/train.html" in parser.links


# Appended to the page: what the browser lays out per table row (innerText leaves out what CSS hides).
_SHOWN = """<script>
const shown = [...document.querySelectorAll("table")[0].rows].map(r => [...r.cells].map(c => c.innerText));
document.body.insertAdjacentHTML("beforeend", "<pre id=shown></pre>");
document.getElementById("shown").textContent = JSON.stringify(shown);
</script>"""


def test_report_opens_in_a_headless_browser_with_every_value(tmp_path: Path) -> None:
    """Debian's chromium (installed by bootstrap) opens report.html and lays out a row per value."""
    page = tmp_path / "report.html"
    page.write_text(render_html(_report()).replace("</body>", _SHOWN + "</body>"), encoding="utf-8")
    dom = subprocess.run(
        ["chromium-headless-shell", "--no-sandbox", "--disable-gpu", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    shown = json.loads(html.unescape(dom.split('<pre id="shown">', 1)[1].split("</pre>", 1)[0]))
    header, *rows = shown
    assert header[:2] == ["country", "status"]
    by_value = {row[0]: row for row in rows}
    assert sorted(by_value) == ["de", "fr"]
    assert by_value["fr"][1] == "failed" and by_value["fr"][3] == "fr.nb_train: cell 3: KeyError: 'fr'"
    assert by_value["de"][1] == "success" and by_value["de"][7:] == ["0.500 h", "$0.03"]
    assert by_value["de"][5] == "nb/train.ipynb"  # the rendered notebook's link text


def test_the_report_names_the_code_version_the_run_synced() -> None:
    report = build_report(INPUTS, RUN, {}, {}, {}, code_version="3f2a9c0d1e4b")
    assert report["code_version"] == "3f2a9c0d1e4b"
    assert "code version\n3f2a9c0d1e4b; wall time" in render_html(report)
    assert "code version\nunknown; wall time" in render_html(build_report(INPUTS, RUN, {}, {}, {}))


def test_the_report_shows_the_date_spec_wall_time_and_each_values_injected_parameters() -> None:
    """What each value's notebooks got, as papermill injected it: the value's parameters, what the manual
    run overrode, the run-time ones; a sensitive name's value hidden as Airflow hides it."""
    db = {"host": "db", "password": "pw"}  # a nested mapping: its sensitive key hidden too
    values = {"de": {"lookback_days": 90, "country": "de", "api_token": "s3cr3t", "env": "preprod", "db": db}}
    inputs = {
        **INPUTS,
        "spec": "project_configs/churn.yaml",
        "form": {"lookback_days": 90},
        "notebook_parameters": {"nb/train.ipynb": {"max_depth": 4, "DB-Password": "hunter2"}},
        "groups": [{**_group("de"), "parameters": values}],
    }
    report = build_report(
        inputs, RUN, {}, {}, {}, conf={"lookback_days": 30}, logical_date="2026-01-05", wall_time_s=41.26
    )
    assert report["values"][0]["parameters"] == {
        "lookback_days": 30,
        "country": "de",
        "api_token": "***",
        "env": "preprod",
        "db": {"host": "db", "password": "***"},
        "logical_date": "2026-01-05",
        "run_id": RUN,
        "output_prefix": f"{FOLDER}/de",
    }
    assert report["notebook_parameters"] == {"nb/train.ipynb": {"max_depth": 4, "DB-Password": "***"}}
    assert (report["logical_date"], report["spec"], report["wall_time_s"]) == (
        "2026-01-05",
        "project_configs/churn.yaml",
        41.3,
    )
    page = render_html(report)
    assert f"run {RUN} for logical date 2026-01-05, spec\nproject_configs/churn.yaml," in page
    assert "wall time 41.3 s</p>" in page
    assert "api_token = &#x27;***&#x27;" in page and "s3cr3t" not in page and "hunter2" not in page
    assert "nb/train.ipynb: max_depth = 4<br>DB-Password = &#x27;***&#x27;" in page


def test_a_local_runs_report_shows_where_its_wall_time_went() -> None:
    split = {"cli": 1.0, "db": 0.02, "airflow": 9.97, "environment": 6.5, "notebooks": 16.78}
    split |= {"delivery": 0.0, "task_overhead": 5.79, "shutdown": 2.32, "total": 42.38}
    page = render_html({**build_report(INPUTS, RUN, {}, {}, {}), "time_split": split})
    assert "<h2>Where the wall time went</h2>" in page and "from its start to its end: 42.38 s" in page
    assert "<tr><td>notebooks</td><td>16.78 s</td></tr><tr><td>delivery</td><td>0.00 s</td></tr>" in page
    assert "wall time went" not in render_html(build_report(INPUTS, RUN, {}, {}, {}))  # production: none
