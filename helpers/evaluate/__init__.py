"""Evaluation (07): the fixed test set and report, per-clip metrics, the judge models, standard
protocols, stability/long-form/dialogue, signal metrics, and notebook 00's codec report."""
