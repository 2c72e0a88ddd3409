#!/bin/sh
# The one command for the first machine with a CUDA GPU: the CUDA tests, the checker on CUDA,
# the precision table, a data-parallel run and a throughput benchmark, in about five minutes.
# Without CUDA it says so in one line and exits 0. Flags go to `python -m bench.gpu_check`.
cd "$(dirname "$0")/.." || exit 2
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" exec "${PYTHON:-python}" -m bench.gpu_check "$@"
