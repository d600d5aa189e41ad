from booth_ctl.cli._main import main

raise SystemExit(main())
