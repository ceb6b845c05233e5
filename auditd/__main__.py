from auditd.cli import main

raise SystemExit(main())
