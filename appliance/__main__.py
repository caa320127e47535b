"""`python -m appliance` runs the `facegate` command line."""

from appliance.cli import main

raise SystemExit(main())
