from mskstudio.cli import main

raise SystemExit(main())
