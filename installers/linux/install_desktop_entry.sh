#!/usr/bin/env bash
# Adds mskstudio to the desktop menu of the current user (no root needed).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
DEST="${XDG_DATA_HOME:-$HOME/.local/share}/applications"
mkdir -p "$DEST"
sed "s#@BUNDLE@#$HERE#g" "$HERE/mskstudio.desktop" > "$DEST/mskstudio.desktop"
echo "menu entry written to $DEST/mskstudio.desktop"
