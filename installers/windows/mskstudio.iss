; Inno Setup script: per-user install of the PyInstaller bundle, no admin rights.
; Built by installers\windows\build.ps1 (passes AppVersion and SourceDir).
#ifndef AppVersion
  #define AppVersion "0.0.0"
#endif
#ifndef SourceDir
  #define SourceDir "..\..\dist\mskstudio"
#endif

[Setup]
AppId={{6F1C2E0A-8D4B-4C59-9E57-3A1B7C2D9F10}
AppName=mskstudio
AppVersion={#AppVersion}
AppPublisher=mskstudio
DefaultDirName={localappdata}\Programs\mskstudio
DefaultGroupName=mskstudio
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog
OutputBaseFilename=mskstudio-setup-{#AppVersion}
Compression=lzma2/ultra64
SolidCompression=yes
DiskSpanning=no
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
SetupIconFile=..\..\resources\icons\mskstudio.ico
UninstallDisplayIcon={app}\mskstudio.exe
WizardStyle=modern

[Files]
Source: "{#SourceDir}\*"; DestDir: "{app}"; Flags: recursesubdirs createallsubdirs ignoreversion

[Icons]
; --gui makes the one executable open the desktop application.
Name: "{group}\mskstudio"; Filename: "{app}\mskstudio.exe"; Parameters: "--gui"; IconFilename: "{app}\mskstudio.exe"
Name: "{group}\Uninstall mskstudio"; Filename: "{uninstallexe}"
Name: "{userdesktop}\mskstudio"; Filename: "{app}\mskstudio.exe"; Parameters: "--gui"; Tasks: desktopicon

[Tasks]
Name: "desktopicon"; Description: "Create a desktop shortcut"; Flags: unchecked

[Run]
Filename: "{app}\mskstudio.exe"; Parameters: "--gui"; Description: "Start mskstudio"; Flags: nowait postinstall skipifsilent
