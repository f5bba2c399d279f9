"""Data: the dataset catalog and phase mixes, speaker facts, 01's clip analysis and driver,
02's SNAC token shards. Depends on the core and colab/ (Drive space, atomic copies)."""
