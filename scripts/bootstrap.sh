#!/usr/bin/env bash
# Sets up a fresh Debian machine: system packages the tests and demo need, uv, and .venv.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
[ -x /usr/sbin/sshd ] || need_apt+=(openssh-server)
[ -x /usr/bin/ssh ] || need_apt+=(openssh-client)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql)
command -v dot >/dev/null || need_apt+=(graphviz)
command -v jq >/dev/null || need_apt+=(jq)  # the OnStart script of docs/deploy.md (tests/e2e/test_host_keys.py)
[ -x /usr/bin/redis-server ] || need_apt+=(redis-server)  # the Celery broker of tests/distributed
# R notebooks: R and its Jupyter kernel "ir" (tests run an R notebook end to end; no Julia on Debian)
command -v R >/dev/null || need_apt+=(r-base-core)
[ -d /usr/lib/R/site-library/IRkernel ] || need_apt+=(r-cran-irkernel)
# a headless browser (Debian's chromium without its GUI): tests open the run report in it, and click a
# notebook task's extra link in the Airflow UI with it (Playwright, from the test extra, drives it)
command -v chromium-headless-shell >/dev/null || need_apt+=(chromium-headless-shell)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing system packages: ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  # Debian's packages start services we do not want; the tests start their own on loopback.
  service ssh stop >/dev/null 2>&1 || true
  service postgresql stop >/dev/null 2>&1 || true
  service redis-server stop >/dev/null 2>&1 || true
fi

PYTHON=${PYTHON:-python3.11}
command -v uv >/dev/null || { echo "installing uv (the Python package installer)"; "$PYTHON" -m pip install -q uv==0.13.8; }
[ -x .venv/bin/python ] || { echo "creating .venv with $PYTHON"; uv venv -q -p "$PYTHON" .venv; }
# say what comes: the first install downloads a few hundred packages (Airflow is most of them)
# every extra, at the exact versions of constraints.txt (pyproject.toml has ranges): what CI and the demo run
airflow=$(grep -o '^apache-airflow==[^ ]*' constraints.txt | head -1)
echo "installing dag-factory with ${airflow:-apache-airflow}, its providers, papermill, DuckDB and the test tools into .venv (1-3 min the first time; the list: .venv/install.log)"
uv pip install --compile-bytecode -p .venv/bin/python -e ".[all,test]" -c constraints.txt > .venv/install.log 2>&1 || { cat .venv/install.log; exit 1; }
# the editable build leaves its metadata in the checkout too; on sys.path (pytest, airflow run from here)
# Airflow would find the plugin's entry point twice and list the second as an import error
rm -rf ./*.egg-info
grep -E "^(Resolved|Prepared|Installed|Uninstalled|Audited) " .venv/install.log | sed 's/^/  /' || true
# papermill finds kernels on Jupyter's data path, which every venv shares in /usr/share/jupyter and
# /usr/local/share/jupyter (the local backend runs notebooks from a fresh venv per run): Debian's
# r-cran-irkernel puts "ir" in the first; register it in the second where it did not.
if [ ! -f /usr/share/jupyter/kernels/ir/kernel.json ] && [ ! -f /usr/local/share/jupyter/kernels/ir/kernel.json ]; then
  PATH="$PWD/.venv/bin:$PATH" R --quiet --no-save -e "IRkernel::installspec(user = FALSE, prefix = '/usr/local')" >/dev/null
fi
touch .venv/.installed
