from higress_init.cli.main import main

raise SystemExit(main())
