"""Shared test setup: offline, one CPU thread, and session-wide tiny objects."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # an accidental hub download fails loudly

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)  # CI has 2 shared cores; one thread per test process is fastest


@pytest.fixture(scope="session")
def snac_random():
    """SNAC 24 kHz architecture with fixed random weights (seed helpers.codec.RANDOM_SEED), on CPU."""
    from helpers.codec import SnacCodec
    from helpers.profiles import RANDOM_SNAC_24KHZ

    return SnacCodec.load(RANDOM_SNAC_24KHZ, device="cpu")
