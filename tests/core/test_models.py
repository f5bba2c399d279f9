"""helpers.models: tiny profile, loading, Stage 1 vocabulary extension, stage folders."""
import json
import sys
import types

import pytest
import torch

from helpers import models as M
from helpers import tiny_models
from helpers.profiles import TINY_LLAMA
from helpers.tokens import (AUDIO_END, N_NEW_TOKENS, PAD, TokenLayout, audio_token, emotion_token, new_tokens,
    nonverbal_token)

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny_base():
    """(model, tokenizer) of the tiny profile; tests that mutate must build their own."""
    return tiny_models.build_tiny_base(seed=0)


@pytest.fixture(scope="module")
def extended():
    model, tok = tiny_models.build_tiny_base(seed=0)
    return M.extend_vocabulary(model, tok, seed=0)


def _state_equal(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ----------------------------------------------------------------------------- tiny profile
def test_tiny_tokenizer_is_deterministic_and_llama3_shaped(tiny_base):
    _, tok = tiny_base
    again = tiny_models.build_tiny_tokenizer()
    assert again.get_vocab() == tok.get_vocab()
    assert 1000 <= len(tok) <= 2000
    assert tok.bos_token == tiny_models.BOS_TOKEN and tok.eos_token == tiny_models.EOS_TOKEN
    ids = tok("Hello world, how are you?").input_ids
    assert ids[0] == tok.bos_token_id and tok.eos_token_id not in ids
    assert tok.decode(ids, skip_special_tokens=True) == "Hello world, how are you?"
    # byte-level: any text round-trips, no unknown token
    odd = "Zoë paid 3€ — ok? 🙂"
    assert tok.decode(tok(odd).input_ids, skip_special_tokens=True) == odd
    assert tok.pad_token is None  # <|pad|> comes with the extension


def test_tiny_tokenizer_trains_on_given_texts():
    a = tiny_models.build_tiny_tokenizer(["aaa bbb aaa bbb ccc"] * 3, vocab_size=300)
    b = tiny_models.build_tiny_tokenizer(["aaa bbb aaa bbb ccc"] * 3, vocab_size=300)
    assert a.get_vocab() == b.get_vocab()
    assert len(a) < 300  # ran out of merges: tiny text, small vocabulary
    assert len(a("aaa").input_ids) == 2  # bos + one merged token
    with pytest.raises(ValueError, match="non-empty"):
        tiny_models.build_tiny_tokenizer([])


def test_corpus_sentences_reads_text_column_and_rejects_unknown_layout(tmp_path):
    good = tmp_path / "metadata.csv"
    good.write_text("file,text\na.wav,Hello there.\nb.wav,General Kenobi.\n")
    assert tiny_models.corpus_sentences(good) == ["Hello there.", "General Kenobi."]
    bad = tmp_path / "bad.csv"
    bad.write_text("file,words\na.wav,hi\n")
    with pytest.raises(ValueError, match="text column"):
        tiny_models.corpus_sentences(bad)
    assert tiny_models.corpus_sentences(tmp_path / "absent.csv") == []


def test_tiny_llama_shapes_and_tying(tiny_base):
    model, tok = tiny_base
    cfg = model.config
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.num_key_value_heads) == (64, 2, 4, 2)
    assert cfg.rope_parameters["rope_theta"] == 500_000.0 and cfg.max_position_embeddings == 8192
    assert model.get_input_embeddings().weight.shape == (len(tok), 64)
    assert model.lm_head.weight is model.model.embed_tokens.weight
    assert model.dtype == torch.float32 and cfg._attn_implementation == "sdpa"
    ids = torch.tensor([tok("A short test.").input_ids])
    with torch.no_grad():
        assert model(input_ids=ids).logits.shape == (1, ids.shape[1], len(tok))
    # same seed, same weights; global RNG untouched
    state = torch.random.get_rng_state()
    assert _state_equal(tiny_models.build_tiny_llama(len(tok), seed=0, bos_token_id=tok.bos_token_id,
                                           eos_token_id=tok.eos_token_id), model)
    assert torch.equal(state, torch.random.get_rng_state())
    assert not torch.equal(tiny_models.build_tiny_llama(len(tok), seed=1).lm_head.weight, model.lm_head.weight)


def test_load_base_tiny_sentinel_and_local_folder_are_the_same_model(tmp_path, tiny_base):
    model, tok = tiny_base
    m1, t1 = M.load_base(TINY_LLAMA)
    assert _state_equal(m1, model) and t1.get_vocab() == tok.get_vocab()
    folder = M.save_tiny_base(tmp_path / "tiny-base")
    m2, t2 = M.load_base(folder)
    assert _state_equal(m2, model) and t2.get_vocab() == tok.get_vocab()
    assert m2.lm_head.weight is m2.model.embed_tokens.weight
    text = "The same path as a hub model."
    assert t2(text).input_ids == tok(text).input_ids
    m3, _ = M.load_base(folder, dtype="bfloat16")
    assert m3.dtype == torch.bfloat16
    with pytest.raises(FileNotFoundError, match="neither a model folder"):
        M.load_base(tmp_path / "missing")


# ----------------------------------------------------------------------------- tokens
def test_get_hf_token_reads_env_and_never_prints_it(monkeypatch, capsys):
    secret = "hf_ThisMustNeverBePrinted123"
    monkeypatch.setenv("HF_TOKEN", secret)
    assert M.get_hf_token() == secret
    out = capsys.readouterr()
    assert secret not in out.out + out.err


def _fake_colab(monkeypatch, behaviour):
    userdata = types.ModuleType("google.colab.userdata")

    class SecretNotFoundError(Exception):
        pass

    class NotebookAccessError(Exception):
        pass

    def get(key):
        assert key == "HF_TOKEN"
        if isinstance(behaviour, str):
            return behaviour
        raise {"missing": SecretNotFoundError, "denied": NotebookAccessError}[behaviour[0]]()

    userdata.SecretNotFoundError, userdata.NotebookAccessError, userdata.get = (
        SecretNotFoundError, NotebookAccessError, get)
    colab = types.ModuleType("google.colab")
    colab.userdata = userdata
    google = types.ModuleType("google")
    google.colab = colab
    monkeypatch.setitem(sys.modules, "google", google)
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    monkeypatch.setitem(sys.modules, "google.colab.userdata", userdata)


def test_get_hf_token_from_colab_secrets(monkeypatch, capsys):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    _fake_colab(monkeypatch, "hf_colabSecret999")
    assert M.get_hf_token() == "hf_colabSecret999"
    out = capsys.readouterr()
    assert "hf_colabSecret999" not in out.out + out.err

    _fake_colab(monkeypatch, ("missing",))
    assert M.get_hf_token() is None
    assert "Secrets" in capsys.readouterr().err
    _fake_colab(monkeypatch, ("denied",))
    assert M.get_hf_token() is None
    assert "Notebook access" in capsys.readouterr().err


def test_gated_repo_failure_says_how_to_fix(monkeypatch):
    import httpx
    from huggingface_hub.errors import GatedRepoError
    from transformers import AutoTokenizer

    def refuse(name, **kwargs):
        resp = httpx.Response(403, request=httpx.Request("GET", f"https://huggingface.co/{name}"))
        try:
            raise GatedRepoError("Access to model is restricted", response=resp)
        except GatedRepoError as e:  # transformers wraps hub errors in OSError
            raise OSError("You are trying to access a gated repo.") from e

    monkeypatch.setattr(AutoTokenizer, "from_pretrained", refuse)
    monkeypatch.setenv("HF_TOKEN", "hf_fake")
    with pytest.raises(M.HubAccessError, match="accept the Llama 3.2 licence") as err:
        M.load_base("meta-llama/Llama-3.2-3B")
    assert "HF_TOKEN" in str(err.value) and "hf_fake" not in str(err.value)

    def other(name, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(AutoTokenizer, "from_pretrained", other)
    with pytest.raises(OSError, match="disk full") as err:
        M.load_base("meta-llama/Llama-3.2-3B")
    assert not isinstance(err.value, M.HubAccessError)


# ----------------------------------------------------------------------------- stage 1
def test_extension_follows_the_token_contract(extended, tiny_base):
    model, tok, layout, report = extended
    _, base_tok = tiny_base
    base = len(base_tok)
    assert layout == TokenLayout.from_tokenizer(tok)
    assert layout.base_vocab_size == base == report.base_vocab_size
    assert len(tok) == base + N_NEW_TOKENS == layout.vocab_size
    assert tok.convert_tokens_to_ids(new_tokens()) == list(range(base, base + N_NEW_TOKENS))
    assert tok.pad_token == PAD and tok.pad_token_id == layout.pad_id == model.config.pad_token_id
    rows = model.get_input_embeddings().weight.shape[0]
    assert rows % 64 == 0 and rows == layout.padded_vocab_size(64) == report.embedding_rows
    assert model.config.vocab_size == rows
    assert report.ok and report.ids_contiguous and report.base_ids_unchanged and report.base_rows_unchanged
    assert report.tied_before and report.tied_after and model.lm_head.weight is model.model.embed_tokens.weight
    assert report.params_after - report.params_before == (rows - base) * 64
    md = report.to_markdown()
    assert "all checks pass | yes" in md and f"{base:,}" in md
    json.dumps(report.to_dict())  # serialisable for the stage marker


def test_added_tokens_are_atomic_in_text(extended):
    _, tok, layout, _ = extended
    snac = audio_token(0, 5)
    assert tok(snac, add_special_tokens=False).input_ids == [layout.audio_id(0, 5)]
    ids = tok(f"Hello{snac}world", add_special_tokens=False).input_ids
    assert ids.count(layout.audio_id(0, 5)) == 1
    assert layout.audio_id(0, 5) in tok(f"Hello {snac} world").input_ids
    frame = "".join(audio_token(cb, 4095) for cb in (0, 1, 1, 2)) + AUDIO_END
    assert tok(frame, add_special_tokens=False).input_ids == [
        layout.audio_id(0, 4095), layout.audio_id(1, 4095), layout.audio_id(1, 4095),
        layout.audio_id(2, 4095), layout.audio_end_id]
    text = f"Oh no {nonverbal_token('laugh')} really{emotion_token('happy')}"
    ids = tok(text, add_special_tokens=False).input_ids
    assert layout.nonverbal_id("laugh") in ids and layout.emotion_id("happy") in ids
    # a near-miss is text, not a token
    assert all(i < layout.base_vocab_size for i in tok("<|snac1_4096|>", add_special_tokens=False).input_ids)


def test_extension_keeps_text_behaviour(extended, tiny_base):
    model, tok, layout, report = extended
    base_model, base_tok = tiny_base
    base = layout.base_vocab_size
    texts = list(M.CHECK_TEXTS) + ["Another sentence the report never saw, with 42 numbers."]
    for text in texts:
        ids = base_tok(text).input_ids
        assert tok(text).input_ids == ids
        x = torch.tensor([ids])
        with torch.no_grad():
            before = base_model(input_ids=x).logits
            after = model(input_ids=x).logits
        assert after.shape[-1] == layout.padded_vocab_size(64)
        assert (after[..., :base] - before).abs().max().item() <= 1e-5
    assert report.max_abs_logit_diff <= 1e-5
    w = model.get_input_embeddings().weight
    assert torch.equal(w[:base], base_model.get_input_embeddings().weight)
    assert 0 < report.new_token_prob_mass < 1 and report.text_kl_nats > 0


def test_new_rows_are_initialised_distinct_and_near_the_mean(extended, tiny_base):
    model, _, layout, _ = extended
    base = layout.base_vocab_size
    w = model.get_input_embeddings().weight.detach()
    new = w[base:]  # contract tokens and padding rows
    assert new.abs().sum(dim=1).min() > 0  # no zero rows
    assert torch.unique(new, dim=0).shape[0] == new.shape[0]  # all rows distinct
    mean, std = w[:base].mean(0), w[:base].std(0)
    # mean + 0.1 * std * noise: centred on the base mean, spread ~0.1 of the base spread
    assert (new.mean(0) - mean).abs().max() < 0.05 * std.max()
    ratio = (new.std(0) / std).mean().item()
    assert 0.08 < ratio < 0.12


def test_extension_is_deterministic_by_seed_and_refuses_to_run_twice(extended):
    model_a, tok_a, _, _ = extended
    m, t = tiny_models.build_tiny_base(seed=0)
    model_b, tok_b, _, _ = M.extend_vocabulary(m, t, seed=0)
    assert _state_equal(model_a, model_b) and tok_a.get_vocab() == tok_b.get_vocab()
    m, t = tiny_models.build_tiny_base(seed=0)
    model_c, *_ = M.extend_vocabulary(m, t, seed=1)
    assert not torch.equal(model_c.lm_head.weight, model_a.lm_head.weight)
    with pytest.raises(ValueError, match="already extended"):
        M.extend_vocabulary(model_b, tok_b)


def test_untied_output_layer_gets_its_own_new_rows():
    tok = tiny_models.build_tiny_tokenizer()
    model = tiny_models.build_tiny_llama(len(tok), seed=3)
    model.config.tie_word_embeddings = False
    model.lm_head.weight = torch.nn.Parameter(model.lm_head.weight.detach().clone() * 2)
    assert model.lm_head.weight is not model.model.embed_tokens.weight
    model, tok, layout, report = M.extend_vocabulary(model, tok, pad_to_multiple_of=128)
    assert not report.tied_after and report.ok
    rows = layout.padded_vocab_size(128)
    assert rows % 128 == 0 and model.lm_head.weight.shape == (rows, 64)
    out_new = model.lm_head.weight[layout.base_vocab_size:].detach()
    in_new = model.model.embed_tokens.weight[layout.base_vocab_size:].detach()
    assert not torch.equal(out_new, in_new)
    out_mean = model.lm_head.weight[:layout.base_vocab_size].mean(0).detach()
    assert torch.allclose(out_new.mean(0), out_mean, atol=0.01)


def test_extension_rejects_bad_arguments(tiny_base):
    model, tok = tiny_base
    with pytest.raises(ValueError, match="pad_to_multiple_of"):
        M.extend_vocabulary(model, tok, pad_to_multiple_of=0)
    with pytest.raises(ValueError, match="init"):
        M.extend_vocabulary(model, tok, init="zeros")
    assert len(tok) < N_NEW_TOKENS  # nothing was added by the refused calls


# ----------------------------------------------------------------------------- stage folders
def test_save_and_load_stage_round_trip(tmp_path, extended):
    model, tok, layout, report = extended
    folder = M.save_stage(model, tok, tmp_path / "stage1", metadata=report.to_dict())
    marker = json.loads((folder / M.COMPLETE_MARKER).read_text())
    assert "model.safetensors" in marker["files"] and marker["metadata"]["ok"] is True
    assert not list(tmp_path.glob(".stage1.*"))  # no temporary folder left behind
    m2, t2 = M.load_stage(folder)
    assert _state_equal(m2, model) and m2.lm_head.weight is m2.model.embed_tokens.weight
    assert t2.get_vocab() == tok.get_vocab() and t2.pad_token == PAD
    assert TokenLayout.from_tokenizer(t2) == layout
    text = f"Say it {audio_token(0, 5)} {nonverbal_token('sigh')} now."
    assert t2(text).input_ids == tok(text).input_ids
    # saving again replaces the folder atomically
    M.save_stage(m2, t2, folder, metadata={"again": True})
    assert M.read_complete_marker(folder)["metadata"] == {"again": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stage1"]


def test_load_stage_refuses_incomplete_folders(tmp_path, extended):
    model, tok, _, _ = extended
    folder = M.save_stage(model, tok, tmp_path / "stage1")
    (folder / M.COMPLETE_MARKER).unlink()  # as if the save had died before the marker
    with pytest.raises(M.IncompleteStageError, match="not completely written"):
        M.load_stage(folder)
    folder = M.save_stage(model, tok, tmp_path / "stage1b")
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])  # truncated copy
    with pytest.raises(M.IncompleteStageError, match="truncated"):
        M.load_stage(folder)
    weights.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # same size, one bit flipped
    with pytest.raises(M.IncompleteStageError, match="SHA-256"):
        M.load_stage(folder)
    with pytest.raises(FileNotFoundError):
        M.load_stage(tmp_path / "never-written")


def test_failed_save_leaves_previous_stage_intact(tmp_path, extended, monkeypatch):
    model, tok, _, _ = extended
    folder = M.save_stage(model, tok, tmp_path / "stage1", metadata={"v": 1})

    class Boom(RuntimeError):
        pass

    def explode(*args, **kwargs):
        raise Boom("disk went away")

    monkeypatch.setattr(type(tok), "save_pretrained", explode)
    with pytest.raises(Boom):
        M.save_stage(model, tok, folder, metadata={"v": 2})
    assert M.read_complete_marker(folder)["metadata"] == {"v": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stage1"]


def test_extension_checks_catch_a_damaged_base_row(monkeypatch):
    real = M._init_rows

    def off_by_one(weight, start, *args):  # a bug that also overwrites the last base row
        return real(weight, start - 1, *args)

    monkeypatch.setattr(M, "_init_rows", off_by_one)
    model, tok = tiny_models.build_tiny_base(seed=0)
    with pytest.raises(RuntimeError, match="failed its checks") as err:
        M.extend_vocabulary(model, tok)
    assert "base embedding rows unchanged | **NO**" in str(err.value)
    model, tok = tiny_models.build_tiny_base(seed=0)
    *_, report = M.extend_vocabulary(model, tok, strict=False)
    assert not report.ok and not report.base_rows_unchanged and report.base_ids_unchanged
