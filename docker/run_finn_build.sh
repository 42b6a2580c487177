#!/usr/bin/env bash
# Build an edgeprune FINN project (from `edgeprune export finn`) to a bitstream in FINN's container.
#
#   FINN_XILINX_PATH=/tools/Xilinx FINN_XILINX_VERSION=2022.2 ./docker/run_finn_build.sh PROJECT_DIR
#
# Needs docker and git. Steps:
#   1. clone FINN at FINN_REF into $EDGEPRUNE_FINN_CACHE (default ~/.cache/edgeprune/finn-<ref>)
#      and fetch its pinned dependencies (FINN's fetch-repos.sh);
#   2. build FINN's image from its docker/Dockerfile.finn (as FINN's run-docker.sh does), then
#      this directory's Dockerfile on top of it;
#   3. run PROJECT_DIR/build.py in the container with the Xilinx installation and the project
#      mounted at the same paths. Results: PROJECT_DIR/output_<board>/ (bitfile/, driver/,
#      deploy/, report/).
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
PROJECT="${1:-}"
[ -n "$PROJECT" ] && [ -f "$PROJECT/build.py" ] || {
    echo "usage: $0 PROJECT_DIR   (a directory written by 'edgeprune export finn')" >&2; exit 2; }
PROJECT="$(cd "$PROJECT" && pwd)"
: "${FINN_XILINX_PATH:?set FINN_XILINX_PATH to your Xilinx install dir (e.g. /tools/Xilinx)}"
: "${FINN_XILINX_VERSION:?set FINN_XILINX_VERSION (e.g. 2022.2)}"
[ -d "$FINN_XILINX_PATH/Vivado/$FINN_XILINX_VERSION" ] || {
    echo "run_finn_build.sh: no $FINN_XILINX_PATH/Vivado/$FINN_XILINX_VERSION" >&2; exit 2; }

# The FINN commit whose DataflowBuildConfig edgeprune's build.py was checked against.
FINN_REF="${FINN_REF:-00779226d41f8e79507c3f2089c8da55e12f9fd8}"
FINN_REPO="${FINN_REPO:-https://github.com/Xilinx/finn.git}"
CACHE="${EDGEPRUNE_FINN_CACHE:-$HOME/.cache/edgeprune/finn-${FINN_REF:0:12}}"
XRT_DEB_VERSION="${XRT_DEB_VERSION:-xrt_202220.2.14.354_22.04-amd64-xrt}"
BASE_TAG="edgeprune/finn-base:${FINN_REF:0:12}"
TAG="edgeprune/finn:${FINN_REF:0:12}"
BUILD_DIR="${FINN_HOST_BUILD_DIR:-/tmp/edgeprune_finn_build}"

if [ ! -d "$CACHE/.git" ]; then
    git clone "$FINN_REPO" "$CACHE"
fi
git -C "$CACHE" fetch --quiet origin "$FINN_REF" 2>/dev/null || true
git -C "$CACHE" checkout --quiet "$FINN_REF"
(cd "$CACHE" && ./fetch-repos.sh)

if ! docker image inspect "$BASE_TAG" >/dev/null 2>&1; then
    (cd "$CACHE" && docker build -f docker/Dockerfile.finn \
        --build-arg XRT_DEB_VERSION="$XRT_DEB_VERSION" --tag "$BASE_TAG" .)
fi
docker build --build-arg FINN_IMAGE="$BASE_TAG" --tag "$TAG" "$HERE"

mkdir -p "$BUILD_DIR"
VIVADO_PATH="$FINN_XILINX_PATH/Vivado/$FINN_XILINX_VERSION"
HLS_PATH="$FINN_XILINX_PATH/Vitis_HLS/$FINN_XILINX_VERSION"
VITIS_PATH="$FINN_XILINX_PATH/Vitis/$FINN_XILINX_VERSION"
# --init: Vivado hangs in containers without an init process (FINN run-docker.sh does the same).
exec docker run --rm --init \
    --user "$(id -u):$(id -g)" \
    -v "$FINN_XILINX_PATH:$FINN_XILINX_PATH:ro" \
    -v "$CACHE:$CACHE" \
    -v "$PROJECT:$PROJECT" -w "$PROJECT" \
    -v "$BUILD_DIR:$BUILD_DIR" \
    -e HOME=/tmp \
    -e FINN_ROOT="$CACHE" \
    -e FINN_BUILD_DIR="$BUILD_DIR" \
    -e FINN_XILINX_PATH="$FINN_XILINX_PATH" -e FINN_XILINX_VERSION="$FINN_XILINX_VERSION" \
    -e XILINX_VIVADO="$VIVADO_PATH" -e VIVADO_PATH="$VIVADO_PATH" \
    -e HLS_PATH="$HLS_PATH" -e VITIS_PATH="$VITIS_PATH" \
    -e VIVADO_IP_CACHE="$BUILD_DIR/vivado_ip_cache" \
    -e NUM_DEFAULT_WORKERS="${NUM_DEFAULT_WORKERS:-4}" \
    -e LD_PRELOAD=/lib/x86_64-linux-gnu/libudev.so.1 \
    "$TAG" python build.py
