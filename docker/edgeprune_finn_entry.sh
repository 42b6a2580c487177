#!/usr/bin/env bash
# Runs inside the FINN container after FINN's own entry point: check the tools, then run the
# project's build (default: python build.py) in the project directory (the working directory).
set -euo pipefail
missing=""
for tool in vivado vitis_hls; do
    command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
done
if [ -n "$missing" ]; then
    echo "edgeprune: error: not on PATH inside the container:$missing (is FINN_XILINX_PATH/FINN_XILINX_VERSION right?)" >&2
    exit 2
fi
[ -f build.py ] || { echo "edgeprune: error: no build.py in $(pwd)" >&2; exit 2; }
exec "$@"
