from stateroom.cli import main

raise SystemExit(main())
