"""``python -m helpers.train``: one rank of a multi-GPU stage (see :func:`helpers.train.recipe._cli`)."""
from .recipe import _cli as main

raise SystemExit(main())
