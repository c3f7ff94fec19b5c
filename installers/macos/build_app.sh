#!/usr/bin/env bash
# Build mskstudio.app and a .dmg on macOS (arm64 or x86_64), from the repo root:
#   python3.11 -m venv .venv && .venv/bin/pip install -e '.[dev]' pyinstaller
#   installers/macos/build_app.sh
# On macOS pyproject.toml selects plain onnxruntime (no CUDA) and torch uses MPS/CPU.
# Signing and notarisation (needed for Gatekeeper on other Macs):
#   codesign --deep --force --options runtime --timestamp \
#            --sign "Developer ID Application: <Team>" dist/mskstudio.app
#   xcrun notarytool submit dist/mskstudio-<v>.dmg --keychain-profile <profile> --wait
#   xcrun stapler staple dist/mskstudio-<v>.dmg
# Without them the user must right-click › Open the first time.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
PY="$ROOT/.venv/bin/python"
ICONSET="$(mktemp -d)/mskstudio.iconset"
mkdir -p "$ICONSET"
for s in 16 32 64 128 256; do
  sips -z $s $s "$ROOT/resources/icons/mskstudio.png" --out "$ICONSET/icon_${s}x${s}.png" >/dev/null
done
iconutil -c icns "$ICONSET" -o "$ROOT/resources/icons/mskstudio.icns"
MSKSTUDIO_MACOS_APP=1 "$PY" -m PyInstaller --noconfirm --clean --distpath "$ROOT/dist" \
  "$ROOT/installers/pyinstaller/mskstudio.spec"
VERSION="$("$ROOT/dist/mskstudio/mskstudio" --version | awk '{print $2}')"
hdiutil create -volname mskstudio -srcfolder "$ROOT/dist/mskstudio.app" -ov -format UDZO \
  "$ROOT/dist/mskstudio-$VERSION.dmg"
echo "built dist/mskstudio.app and dist/mskstudio-$VERSION.dmg"
