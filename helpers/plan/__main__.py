"""``python -m helpers.plan``: the run plan (see :mod:`helpers.plan.run_plan`)."""
from .run_plan import main

raise SystemExit(main())
