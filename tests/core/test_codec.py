"""helpers.codec on the random-weight SNAC 24 kHz (real architecture, CPU, offline).

Proves: the time grid read from the model; T = ceil(n / 2048); batched encoding
gives exactly the one-by-one codes (and why the zero guard is needed); the
analytic receptive field equals the one autograd measures; decode length and
seeded reproducibility; folder save/load round trip; loud errors.
"""
import numpy as np
import pytest
import torch

from helpers import tokens as tk
from helpers.audio import resample
from helpers.codec import SnacCodec, encoder_reach
from helpers.profiles import RANDOM_SNAC_24KHZ

SR = 24000


def chirp_noise(n, seed=0, sr=SR):
    """A 150 Hz -> 4 kHz chirp plus a little white noise: speech-like spectrum spread."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sr
    f = 150 + (4000 - 150) * t / max(t[-1], 1e-3)
    phase = 2 * np.pi * np.cumsum(f) / sr
    return (0.3 * np.sin(phase) + 0.03 * rng.standard_normal(n)).astype(np.float32)


def n_diff(a, b):
    return sum(int((x != y).sum()) for x, y in zip(a, b))


# ----------------------------------------------------------------------------- time grid
def test_time_grid_read_from_the_model(snac_random):
    c = snac_random
    assert c.sample_rate == 24000 and c.hop_length == 512 and c.vq_strides == (4, 2, 1)
    assert c.samples_per_frame == 2048
    np.testing.assert_allclose(c.frame_rates, (24000 / 2048, 24000 / 1024, 24000 / 512))
    assert [round(r, 2) for r in c.frame_rates] == [11.72, 23.44, 46.88]
    assert c.tokens_per_second == pytest.approx(7 * 24000 / 2048)  # 82.03
    assert round(c.tokens_per_second, 2) == 82.03
    info = c.info()
    assert info["parameters"] == sum(p.numel() for p in c.model.parameters())
    assert 19.5e6 < info["parameters"] < 20.1e6  # 19.8 M, like the hub model
    assert c.device.type == "cpu" and not c.model.training


def test_random_weights_are_fixed_and_leave_the_rng_alone(snac_random):
    state = torch.get_rng_state()
    other = SnacCodec.load(RANDOM_SNAC_24KHZ, device="cpu")
    assert torch.equal(torch.get_rng_state(), state)
    a, b = snac_random.model.state_dict(), other.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ----------------------------------------------------------------------------- receptive field
def test_receptive_field_analytic_equals_autograd(snac_random):
    left, right = encoder_reach(snac_random.model.encoder)
    hop, j = snac_random.hop_length, 12
    x = torch.randn(1, 1, 24 * hop, requires_grad=True)
    with torch.enable_grad():
        z = snac_random.model.encoder(x)  # (1, 768, 24) latent steps
        z[0, :, j].sum().backward()
    used = torch.nonzero(x.grad[0, 0]).flatten()
    assert j * hop - used.min().item() == left
    assert used.max().item() - ((j + 1) * hop - 1) == right == snac_random.receptive_field == 4757
    assert snac_random.guard_samples >= right
    assert snac_random.guard_samples % snac_random.samples_per_frame == 0


def test_without_the_guard_padding_changes_valid_frames(snac_random):
    """Why the guard exists: the encoder sees zeros appended after a clip."""
    m, spf = snac_random.model, snac_random.samples_per_frame
    wav = torch.from_numpy(chirp_noise(3 * spf))[None, None]
    with torch.inference_mode():
        alone = m.encode(wav)
        padded = m.encode(torch.nn.functional.pad(wav, (0, 4 * spf)))
    assert n_diff(alone, [p[:, : a.shape[1]] for a, p in zip(alone, padded)]) > 0


# ----------------------------------------------------------------------------- encode
@pytest.mark.parametrize("n", [1, 100, 2047, 2048, 2049, 4096 + 5])
def test_encode_shapes_follow_t_formula(snac_random, n):
    codes = snac_random.encode(chirp_noise(n))
    t = -(-n // 2048)
    assert snac_random.n_frames(n) == t
    assert [c.shape for c in codes] == [(t,), (2 * t,), (4 * t,)]
    assert all(c.dtype == np.int64 and c.min() >= 0 and c.max() < tk.CODEBOOK_SIZE for c in codes)


def test_batch_equals_single_exactly(snac_random):
    c = snac_random
    # 0.085 s (one sample past a frame), 0.1 s, 1 s, 2.3 s, 5 s. Batches are formed from
    # clips sorted by length: bs=3 -> {2049, 2400, 24000}, {55200, 120000};
    # bs=2 -> {2049, 2400}, {24000, 55200}, {120000}: every clip but one is zero-padded
    # to a longer partner at least once. (bs up to 10 and more lengths were checked
    # by hand with the same result; kept out of CI for time.)
    lengths = [24000, 2400, 120000, 2049, 55200]
    wavs = [chirp_noise(n, seed=i) for i, n in enumerate(lengths)]
    single = [c.encode(w) for w in wavs]
    for bs in (3, 2):
        batched = c.encode_batch(wavs, batch_size=bs)
        assert len(batched) == len(wavs)
        assert [n_diff(s, b) for s, b in zip(single, batched)] == [0] * len(wavs), f"batch_size={bs}"
        assert [b[0].shape[0] for b in batched] == [c.n_frames(n) for n in lengths]  # input order kept
        assert all(x.dtype == np.int64 for b in batched for x in b)
    assert c.encode_batch([]) == []

    # Batches by padded seconds (what 02 uses): padded lengths are 0.43, 0.43, 1.28, 2.56, 5.29 s,
    # so a 4 s budget gives {2049, 2400, 24000} (3 x 1.28 s), {55200}, {120000}.
    batched = c.encode_batch(wavs, batch_seconds=4.0)
    assert c.last_encode_stats == {"batches": 3, "oom_retries": 0, "batch_seconds": 4.0}
    assert [n_diff(s, b) for s, b in zip(single, batched)] == [0] * len(wavs)

    # A CUDA out-of-memory error (faked on CPU: more than 1.5 s of padded audio in a batch of
    # two or more clips) halves the budget and retries; the codes stay those of batch 1.
    real = c._encode_padded

    def tight_memory(clips, frames):
        padded = len(clips) * c.padded_seconds(max(frames) * c.samples_per_frame)
        if len(clips) > 1 and padded > 1.5:
            raise torch.cuda.OutOfMemoryError(f"fake: {padded:.2f} s does not fit")
        return real(clips, frames)

    c._encode_padded = tight_memory
    try:
        with pytest.warns(RuntimeWarning, match="out of memory"):
            batched = c.encode_batch(wavs, batch_seconds=4.0)
        assert c.last_encode_stats["oom_retries"] == 1 and c.last_encode_stats["batch_seconds"] == pytest.approx(1.92)
        assert [n_diff(s, b) for s, b in zip(single, batched)] == [0] * len(wavs)

        def no_memory(clips, frames):
            raise torch.cuda.OutOfMemoryError("fake: nothing fits")

        c._encode_padded = no_memory
        with pytest.raises(torch.cuda.OutOfMemoryError, match="single clip of 0.4 s"), pytest.warns(RuntimeWarning):
            c.encode_batch(wavs[:2], batch_seconds=4.0)
    finally:
        del c._encode_padded  # back to the class's method


def test_encode_is_deterministic_and_resamples(snac_random):
    wav48 = chirp_noise(48000 // 5, sr=48000)
    a = snac_random.encode(wav48, sr=48000)
    b = snac_random.encode(resample(wav48, 48000, SR))
    assert n_diff(a, b) == 0 and a[0].shape == (3,)  # 0.2 s -> 4800 samples -> 3 frames
    assert n_diff(a, snac_random.encode(wav48, sr=48000)) == 0
    # (1, n) tensors and float64 are accepted
    w = chirp_noise(3000)
    assert n_diff(snac_random.encode(torch.from_numpy(w)[None]), snac_random.encode(w.astype(np.float64))) == 0


def test_encode_bad_inputs(snac_random):
    c = snac_random
    with pytest.raises(ValueError, match="empty"):
        c.encode(np.zeros(0, np.float32))
    with pytest.raises(ValueError, match="NaN"):
        c.encode(np.array([0.1, np.nan, 0.0], np.float32))
    with pytest.raises(ValueError, match="infinite"):
        c.encode(np.array([np.inf] * 10, np.float32))
    with pytest.raises(ValueError, match=r"mono.*\(2, 1000\)"):
        c.encode(np.zeros((2, 1000), np.float32))
    with pytest.raises(TypeError, match="int16"):
        c.encode(np.zeros(1000, np.int16))
    with pytest.raises(ValueError, match="sr_in"):
        c.encode(np.zeros(1000, np.float32), sr=-5)
    with pytest.raises(ValueError, match="clip 1"):
        c.encode_batch([np.zeros(100, np.float32), np.zeros(0, np.float32)])
    with pytest.raises(ValueError, match="batch_size"):
        c.encode_batch([np.zeros(100, np.float32)], batch_size=0)
    with pytest.raises(ValueError, match="batch_seconds"):
        c.encode_batch([np.zeros(100, np.float32)], batch_seconds=0)


# ----------------------------------------------------------------------------- decode
def test_decode_length_and_seeded_reproducibility(snac_random):
    codes = snac_random.encode(chirp_noise(5000))  # T = 3
    state = torch.get_rng_state()
    a = snac_random.decode(codes)
    assert torch.equal(torch.get_rng_state(), state)  # the seeded decode forks the RNG
    assert a.dtype == np.float32 and a.shape == (3 * snac_random.samples_per_frame,)
    assert np.isfinite(a).all() and np.abs(a).max() <= 1.0  # tanh output
    np.testing.assert_array_equal(a, snac_random.decode(codes, seed=0))
    np.testing.assert_array_equal(snac_random.decode(codes, seed=7), snac_random.decode(codes, seed=7))
    assert not np.array_equal(a, snac_random.decode(codes, seed=1))  # the NoiseBlocks matter
    # lists, (1, n) arrays and tensors are accepted
    as_lists = [c.tolist() for c in codes]
    as_tensors = [torch.from_numpy(c)[None] for c in codes]
    np.testing.assert_array_equal(a, snac_random.decode(as_lists))
    np.testing.assert_array_equal(a, snac_random.decode(as_tensors))


def test_decode_tokens_uses_the_contract(snac_random):
    layout = tk.TokenLayout(base_vocab_size=1000)
    codes = snac_random.encode(chirp_noise(4096))  # T = 2
    ids = layout.codes_to_tokens(codes)
    np.testing.assert_array_equal(snac_random.decode_tokens(ids, layout), snac_random.decode(codes))
    swapped = ids.copy()
    swapped[[0, 1]] = swapped[[1, 0]]  # a CB2 token in a CB1 slot
    with pytest.raises(tk.TokenGrammarError, match="position 0"):
        snac_random.decode_tokens(swapped, layout)
    with pytest.raises(tk.TokenGrammarError, match="more token"):
        snac_random.decode_tokens(ids[:-1], layout)


def test_decode_bad_inputs(snac_random):
    good = [np.zeros(2, np.int64), np.zeros(4, np.int64), np.zeros(8, np.int64)]
    with pytest.raises(ValueError, match="expected 3 codebooks"):
        snac_random.decode(good[:2])
    with pytest.raises(ValueError, match=r"codebook 3 has 7 codes.*\(4T,\)"):
        snac_random.decode([good[0], good[1], good[2][:7]])
    with pytest.raises(ValueError, match="0..4095"):
        snac_random.decode([good[0], good[1], good[2] + tk.CODEBOOK_SIZE])
    with pytest.raises(ValueError, match="0..4095"):
        snac_random.decode([good[0] - 1, good[1], good[2]])
    with pytest.raises(ValueError, match="no frames"):
        snac_random.decode([np.zeros(0, np.int64)] * 3)


# ----------------------------------------------------------------------------- save / load
def test_save_load_folder_round_trip(snac_random, tmp_path):
    folder = snac_random.save_pretrained(tmp_path / "snac")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "pytorch_model.bin"]
    loaded = SnacCodec.load(folder, device="cpu")
    a, b = snac_random.model.state_dict(), loaded.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert loaded.info() | {"name": None} == snac_random.info() | {"name": None}
    wav = chirp_noise(7000, seed=3)
    assert n_diff(snac_random.encode(wav), loaded.encode(wav)) == 0
    codes = snac_random.encode(wav)
    np.testing.assert_array_equal(snac_random.decode(codes), loaded.decode(codes))


def test_load_errors(tmp_path):
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="pytorch_model.bin"):
        SnacCodec.load(tmp_path / "half")
    (tmp_path / "file.bin").write_bytes(b"x")
    with pytest.raises(ValueError, match="is a file"):
        SnacCodec.load(tmp_path / "file.bin")
    with pytest.raises(FileNotFoundError, match="neither an existing folder nor a hub id"):
        SnacCodec.load(tmp_path / "missing" / "folder")
    with pytest.raises(FileNotFoundError, match="owner/name"):
        SnacCodec.load("snac-24khz")
    # HF_HUB_OFFLINE=1 (conftest): the real hub path is exercised and fails loudly
    with pytest.raises(OSError, match="hubertsiuzdak/snac_24khz"):
        SnacCodec.load("hubertsiuzdak/snac_24khz", device="cpu")


def test_models_that_break_the_token_contract_are_refused():
    from snac import SNAC

    small = dict(sampling_rate=24000, encoder_dim=4, encoder_rates=[2, 2], decoder_dim=16,
                 decoder_rates=[2, 2], attn_window_size=None, codebook_dim=4, noise=False)
    with pytest.raises(ValueError, match="4 codebooks, the token contract has 3"):
        SnacCodec(SNAC(codebook_size=tk.CODEBOOK_SIZE, vq_strides=[8, 4, 2, 1], **small), device="cpu")
    with pytest.raises(ValueError, match="codebook size 1024"):
        SnacCodec(SNAC(codebook_size=1024, vq_strides=[4, 2, 1], **small), device="cpu")
    with pytest.raises(ValueError, match=r"codes per frame"):
        SnacCodec(SNAC(codebook_size=tk.CODEBOOK_SIZE, vq_strides=[3, 2, 1], **small), device="cpu")


def test_random_codec_codes_follow_the_audio(snac_random):
    """The tiny profile's random-weight codec is centred (helpers.codec.center_quantizers):
    a 3 s speech clip uses many distinct codes, and different clips use different ones."""
    from helpers.audio import load_audio
    from helpers.evaluate.codec_report import bundled_clip

    codes = []
    for i in (0, 9):
        path, _ = bundled_clip(i)
        wav, _ = load_audio(path, target_sr=snac_random.sample_rate)
        codes.append(snac_random.encode(wav))
    for c in codes:
        assert len(np.unique(c[0])) >= 0.5 * len(c[0])  # uncentred random weights: 2-6 distinct codes
    assert len(set(codes[0][0]) & set(codes[1][0])) < 0.5 * min(len(codes[0][0]), len(codes[1][0]))
