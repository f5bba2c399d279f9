"""What a run costs and covers before it spends anything: the run plan (``python -m helpers.plan``),
voice × emotion coverage, and the preflight (``python -m helpers.plan.preflight``)."""
