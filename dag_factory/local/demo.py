"""What `make demo` prints after the run: where things are, and the delivered rows."""

from __future__ import annotations

import functools
from pathlib import Path

from rich.console import Console
from rich.table import Table

from dag_factory.load.files import require_platform
from dag_factory.load.specs import load_platform
from dag_factory.local.progress import say as print_line
from dag_factory.spec.platform import LocalEnvironment


def show_outputs(spec: Path, date: str) -> None:
    import duckdb

    platform_path = require_platform(spec)
    settings = load_platform(platform_path).settings.environments["local"]
    assert isinstance(settings, LocalEnvironment)
    root = (platform_path.parent / settings.root).resolve()
    warehouse = root / settings.warehouse
    console = Console()
    say = functools.partial(print_line, console)
    say("executed notebooks of every run:")
    say(f"  {root / settings.buckets.output / 'churn-demo'}")
    say("warehouse:")
    say(f"  {warehouse}")
    if not warehouse.exists():
        say("no warehouse yet: the run delivered nothing")
        return
    query = (
        "SELECT country, count(*) AS customers, round(avg(churn_probability), 3) AS avg_churn, "
        "sum(CASE WHEN predicted_churn THEN 1 ELSE 0 END) AS predicted_churners "
        "FROM analytics.churn_scores WHERE logical_date = ? GROUP BY country ORDER BY country"
    )
    say(f"\n{query.replace('?', repr(date))};")
    with duckdb.connect(str(warehouse), read_only=True) as con:
        result = con.execute(query, [date])
        table = Table(*[d[0] for d in result.description])
        for row in result.fetchall():
            table.add_row(*[str(v) for v in row])
    console.print(table)
