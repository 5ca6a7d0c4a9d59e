"""Profile one DagBag parse of a generated DAG folder, in a fresh interpreter set up like run.py's children.

    .venv/bin/python benchmarks/profile_parse.py --variant ours --n 50  # top 40, cumulative
    .venv/bin/python benchmarks/profile_parse.py --variant handwritten --n 50 --sort tottime --top 30
    .venv/bin/python benchmarks/profile_parse.py --variant ours --n 50 --out /tmp/ours.prof  # raw pstats

The folder is benchmarks/out/<variant>/<n>/dags (written by run.py or generate.py; `--generate` writes it
first). Imports (Airflow, the operator modules, the variant's preload) happen before profiling starts,
as in child.py, so the profile shows the parse alone.
"""

from __future__ import annotations

import argparse
import cProfile
import importlib
import io
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _inner(args: argparse.Namespace) -> int:
    from airflow.dag_processing.dagbag import DagBag

    for module in filter(None, args.preload.split(",")):
        importlib.import_module(module)
    profiler = cProfile.Profile()
    t0 = time.perf_counter()
    profiler.enable()
    bag = DagBag(dag_folder=args.dag_dir)
    profiler.disable()
    elapsed = time.perf_counter() - t0
    print(f"parsed {len(bag.dags)} DAGs, {len(bag.import_errors)} import errors, {elapsed:.2f} s (profiled)")
    for path, error in list(bag.import_errors.items())[:2]:
        print(path, error[-800:])
    if args.out:
        profiler.dump_stats(args.out)
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats(args.sort).print_stats(args.top)
    print(text.getvalue())
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variant", default="ours", choices=("ours", "handwritten"))
    p.add_argument("--n", type=int, default=50)
    p.add_argument("--generate", action="store_true", help="(re)write the DAG folder first")
    p.add_argument("--sort", default="cumulative", help="pstats sort key: cumulative, tottime, ...")
    p.add_argument("--top", type=int, default=40)
    p.add_argument("--out", help="write the raw profile here (pstats format)")
    p.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--dag-dir", help=argparse.SUPPRESS)
    p.add_argument("--preload", default="", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.inner:
        return _inner(args)

    import generate
    import run

    gen_dir = generate.OUT / args.variant / str(args.n)
    if args.generate or not (gen_dir / "dags").is_dir():
        gen = generate.generate(args.variant, args.n)
        preload, extra_env = gen.preload, gen.env
    else:
        preload = generate.OURS_PRELOAD if args.variant == "ours" else []
        extra_env = generate.OURS_CHILD_ENV if args.variant == "ours" else {}
    dag_dir = gen_dir / "dags"
    cmd = [
        str(run.MAIN_PYTHON), __file__, "--inner", "--dag-dir", str(dag_dir),
        "--preload", ",".join(run.COMMON_PRELOAD + preload), "--sort", args.sort, "--top", str(args.top),
    ]  # fmt: skip
    if args.out:
        cmd += ["--out", str(Path(args.out).resolve())]
    with tempfile.TemporaryDirectory(prefix="bench-airflow-home-") as home:
        return subprocess.run(cmd, env=run.child_env(Path(home), dag_dir, extra_env), check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
