"""Training: the typed stage config, the one recipe (``python -m helpers.train``), sequences and
packing, memory and precision techniques, attention kernels, checkpoints, DeepSpeed, and the GPU
memory/throughput planner. Depends on the core, colab/ and data/ (and infer/generation for
eval-time samples)."""
