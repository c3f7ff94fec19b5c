#!/usr/bin/env bash
# Build the self-contained Linux bundle (PyInstaller one-folder) and its tarball.
#   installers/linux/build_bundle.sh [OUTDIR]        (default: dist/)
# Needs the project's .venv (make setup); installs PyInstaller into it if missing.
# Flavour: the bundle carries the torch build installed in .venv. Here that is the
# CUDA build (runs on the CPU when no GPU is present); a CPU-only flavour needs a
# CPU torch *and* a matching torchvision, which this machine's package index lacks.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
OUT="${1:-$ROOT/dist}"
PY="$ROOT/.venv/bin/python"
[ -x "$PY" ] || { echo "run 'make setup' first (no .venv)"; exit 1; }
"$PY" -m PyInstaller --version >/dev/null 2>&1 || "$PY" -m pip install -q "pyinstaller>=6.5"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
"$PY" -m PyInstaller --noconfirm --clean --distpath "$OUT" --workpath "$WORK" \
  "$ROOT/installers/pyinstaller/mskstudio.spec"
BUNDLE="$OUT/mskstudio"
# mskstudio-gui: same program, always the GUI (the launcher looks at its own name).
ln -sf mskstudio "$BUNDLE/mskstudio-gui"
install -m 644 "$ROOT/resources/icons/mskstudio.png" "$BUNDLE/mskstudio.png"
install -m 644 "$ROOT/installers/linux/mskstudio.desktop" "$BUNDLE/mskstudio.desktop"
install -m 755 "$ROOT/installers/linux/install_desktop_entry.sh" "$BUNDLE/install_desktop_entry.sh"
VERSION="$("$BUNDLE/mskstudio" --version | awk '{print $2}')"
FLAVOUR="$("$PY" -c 'import torch; print("cuda" if torch.version.cuda else "cpu")')"
TARBALL="$OUT/mskstudio-$VERSION-linux-x86_64-$FLAVOUR.tar.gz"
tar -C "$OUT" -czf "$TARBALL" mskstudio
echo "bundle:  $BUNDLE ($(du -sh "$BUNDLE" | cut -f1))"
echo "tarball: $TARBALL ($(du -sh "$TARBALL" | cut -f1))"
