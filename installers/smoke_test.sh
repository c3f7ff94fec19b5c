#!/usr/bin/env bash
# Smoke test of a built artefact in a clean environment:
#   installers/smoke_test.sh dist/mskstudio-*.whl          (wheel: fresh venv, pip install)
#   installers/smoke_test.sh dist/mskstudio-*.tar.gz       (bundle: unpack, run)
# Starts the GUI offscreen on a fresh demo project, saves a screenshot, runs
# `mskstudio --version` and one CLI job; exits non-zero on any failure.
set -euo pipefail
ARTEFACT="$(realpath "$1")"
PYTHON="${PYTHON:-python3.11}"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
cd "$TMP"
case "$ARTEFACT" in
  *.whl)
    "$PYTHON" -m venv venv
    t0=$(date +%s)
    venv/bin/pip install -q "$ARTEFACT"
    echo "wheel install: $(( $(date +%s) - t0 )) s"
    BIN="$TMP/venv/bin" ;;
  *.tar.gz)
    tar -xzf "$ARTEFACT"
    BIN="$TMP/mskstudio" ;;
  *) echo "unknown artefact: $ARTEFACT"; exit 2 ;;
esac
# A clean environment: no PYTHONPATH, no user site, no display; HOME in the temp folder.
run() { env -i HOME="$TMP/home" PATH="/usr/bin:/bin" LANG=C.UTF-8 QT_QPA_PLATFORM=offscreen "$@"; }
mkdir -p "$TMP/home"
run "$BIN/mskstudio" --version
run "$BIN/mskstudio" demo "$TMP/demo.mskproj" --images 12 --size small --headless
run "$BIN/mskstudio" info "$TMP/demo.mskproj"
t0=$(date +%s%N)
run "$BIN/mskstudio-gui" --screenshot "$TMP/screenshot.png" --quit-after-ms 500 "$TMP/demo.mskproj"
echo "GUI start to screenshot: $(( ($(date +%s%N) - t0) / 1000000 )) ms"
test -s "$TMP/screenshot.png"
mkdir -p "${SMOKE_OUT:-/tmp}"
cp "$TMP/screenshot.png" "${SMOKE_OUT:-/tmp}/smoke_screenshot.png"
echo "smoke test passed (screenshot: ${SMOKE_OUT:-/tmp}/smoke_screenshot.png)"
