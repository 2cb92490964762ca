# Shared by the scripts in loadtest/ that compare with DuckDB (source it;
# bash, from the repository's root): DuckDB from PyPI in the project's
# venv, target/duckdb-venv, installed once; sets $PY to its python.
if [ ! -x target/duckdb-venv/bin/python ] || ! target/duckdb-venv/bin/python -c 'import duckdb' 2>/dev/null; then
  python3 -m venv target/duckdb-venv
  target/duckdb-venv/bin/pip install --quiet duckdb
fi
PY=target/duckdb-venv/bin/python
