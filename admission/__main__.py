from admission.cli.main import main

raise SystemExit(main())
