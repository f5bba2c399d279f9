"""It learns: the tiny model memorises four real assets utterances and then reproduces each one's
codes by greedy decoding from its prompt. This proves that the prompt format, the loss
mask, packing (all four share one packed sequence) and generation agree with each other."""

import numpy as np
import torch

from helpers.train.config import stage_config
from helpers.train.sequences import choose_builtin_voices
from helpers.train.recipe import StageRecipe, generate_codes

torch.set_num_threads(1)
from assets_utterances import FRAMES, assets_utterances as _assets_utterances


def test_tiny_model_memorises_and_reproduces_exact_codes(tmp_path, snac_random):
    from helpers import models
    from helpers.profiles import TINY_LLAMA

    utts = _assets_utterances(snac_random)
    assert len({tuple(np.concatenate(u.codes)) for u in utts}) == 4  # four different clips
    # the codes carry information: a model that ignored its prompt could not reproduce them
    assert all(len(np.unique(u.codes[0])) >= FRAMES // 2 for u in utts)
    model, tok = models.load_base(TINY_LLAMA)
    model, tok, layout, _ = models.extend_vocabulary(model, tok)
    voices = choose_builtin_voices(utts, min_utterances=1)
    assert len(voices.assignments) == 4
    cfg = stage_config(2, "tiny", learning_rate=3e-3, max_steps=180, warmup_steps=10, min_lr_ratio=1.0,
                       weight_decay=0.0, max_seq_len=1024, reference_prob=0.0, eval_fraction=0.0, eval_every=0,
                       save_every=180, log_every=20, progress=False, local_dir=str(tmp_path / "local"))
    recipe = StageRecipe(cfg, model, tok, utts, tmp_path / "stage2", voices, log=lambda m: None).setup()
    report = {r["what"]: r["value"] for r in recipe.data_report()}
    assert report["packing: bins"] == 1  # the four examples train as one packed sequence
    result = recipe.train()
    assert result.final_loss < 0.05, result
    for u in utts:
        codes, rep = generate_codes(recipe.model, layout, recipe.builder.prompt(u), max_new_frames=FRAMES + 4)
        assert not rep.repaired, rep.problems
        for got, want in zip(codes, u.codes):
            np.testing.assert_array_equal(got, want, err_msg=u.utterance_id)
