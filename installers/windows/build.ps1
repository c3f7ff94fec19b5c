# Build the Windows bundle and installer (run in PowerShell on Windows, from the repo root):
#   py -3.11 -m venv .venv; .venv\Scripts\pip install -e ".[dev]" pyinstaller
#   powershell -ExecutionPolicy Bypass -File installers\windows\build.ps1
# Produces dist\mskstudio\ (one-folder bundle) and, when Inno Setup 6 is installed,
# dist\mskstudio-setup-<version>.exe (per-user install, no admin rights).
$ErrorActionPreference = "Stop"
$Root = Resolve-Path "$PSScriptRoot\..\.."
$Py = "$Root\.venv\Scripts\python.exe"
if (-not (Test-Path $Py)) { throw "no .venv: create it first (see the comment at the top)" }
& $Py -m PyInstaller --noconfirm --clean --distpath "$Root\dist" --workpath "$env:TEMP\mskstudio-build" `
    "$Root\installers\pyinstaller\mskstudio.spec"
$Version = (& "$Root\dist\mskstudio\mskstudio.exe" --version).Split(" ")[1]
$Iscc = "${env:ProgramFiles(x86)}\Inno Setup 6\ISCC.exe"
if (Test-Path $Iscc) {
    & $Iscc "/DAppVersion=$Version" "/DSourceDir=$Root\dist\mskstudio" "/O$Root\dist" `
        "$Root\installers\windows\mskstudio.iss"
} else {
    Write-Warning "Inno Setup 6 not found: the bundle is in dist\mskstudio, no installer built"
}
