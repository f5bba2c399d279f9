"""Fixtures shared by the training tests."""
import pytest
from assets_utterances import random_code_utterances

from helpers.data.shards import write_shard


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """An extended tiny model saved like stage 1, and a shard of random-code utterances (speaker spk2,
    accent "other", is no built-in voice: its examples carry cloning references)."""
    from helpers import models
    from helpers.profiles import TINY_LLAMA

    root = tmp_path_factory.mktemp("train")
    model, tok = models.load_base(TINY_LLAMA)
    model, tok, _, _ = models.extend_vocabulary(model, tok)
    models.save_stage(model, tok, root / "stage1")
    write_shard(root / "tokens" / "shard-00000.parquet", random_code_utterances(8, 0, accents=("us", "uk", "other")))
    return root
