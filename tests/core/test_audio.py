"""helpers.audio: exact 16-bit round trips, every format, resampling, downmix, loud errors."""
import io
import os

import numpy as np
import pytest
import soundfile as sf

from helpers.audio import AudioDecodeError, decode_audio_field, load_audio, read_audio, resample, save_wav, to_mono

SR = 24000


def sine(freq, sr, seconds=1.0, amp=0.5):
    t = np.arange(int(sr * seconds)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_hz(wav, sr):
    spec = np.abs(np.fft.rfft(wav * np.hanning(len(wav))))
    return np.fft.rfftfreq(len(wav), 1 / sr)[np.argmax(spec)]


def encoded(wav, sr, fmt, subtype):
    buf = io.BytesIO()
    sf.write(buf, wav, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


# ----------------------------------------------------------------------------- save / load
def test_save_load_exact_on_16bit_grid(tmp_path):
    rng = np.random.default_rng(0)
    k = rng.integers(-32768, 32768, size=5000)
    k[:2] = (-32768, 32767)  # both ends of the int16 range
    wav = (k / 32768).astype(np.float32)
    assert save_wav(tmp_path / "a.wav", wav, SR) == 0
    back, sr = load_audio(tmp_path / "a.wav", target_sr=None)
    assert sr == SR and back.dtype == np.float32
    np.testing.assert_array_equal(back, wav)
    assert sf.info(str(tmp_path / "a.wav")).subtype == "PCM_16"


def test_save_load_within_half_a_step(tmp_path):
    wav = np.random.default_rng(1).uniform(-0.99, 0.99, 4000).astype(np.float32)
    save_wav(tmp_path / "b.wav", wav, 16000)
    back, sr = load_audio(tmp_path / "b.wav", target_sr=None)
    assert sr == 16000 and back.shape == wav.shape
    assert np.abs(back - wav).max() <= 0.5 / 32768 + 1e-7


def test_save_clips_explicitly_and_counts(tmp_path):
    wav = np.array([0.0, 1.5, -2.0, 0.25, 1.0], dtype=np.float32)
    assert save_wav(tmp_path / "c.wav", wav, SR) == 2
    back, _ = load_audio(tmp_path / "c.wav", target_sr=None)
    np.testing.assert_array_equal(back, [0.0, 32767 / 32768, -1.0, 0.25, 32767 / 32768])


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path):
    target = tmp_path / "sub" / "d.wav"
    save_wav(target, sine(440, SR, 0.1), SR)
    before = target.read_bytes()
    with pytest.raises(ValueError, match="NaN"):
        save_wav(target, np.array([0.1, np.nan], dtype=np.float32), SR)
    assert target.read_bytes() == before  # the old file survived the failed write
    save_wav(target, sine(220, SR, 0.2), SR)  # overwrite works
    assert sf.info(str(target)).frames == int(0.2 * SR)
    assert sorted(os.listdir(target.parent)) == ["d.wav"]


def test_save_stereo_and_bad_input(tmp_path):
    st = np.stack([sine(440, SR, 0.1), sine(880, SR, 0.1)], axis=1)
    save_wav(tmp_path / "s.wav", st, SR)
    back, _ = load_audio(tmp_path / "s.wav", target_sr=None, mono=False)
    assert back.shape == st.shape
    with pytest.raises(ValueError, match="non-empty"):
        save_wav(tmp_path / "e.wav", np.zeros(0, np.float32), SR)
    with pytest.raises(ValueError, match="sr"):
        save_wav(tmp_path / "e.wav", st, 0)


# ----------------------------------------------------------------------------- formats
@pytest.mark.parametrize("fmt,subtype,exact", [
    ("WAV", "PCM_16", True), ("FLAC", "PCM_16", True), ("WAV", "FLOAT", True),
    ("OGG", "VORBIS", False), ("OGG", "OPUS", False), ("MP3", "MPEG_LAYER_III", False),
])
def test_each_format_from_path_and_bytes(tmp_path, fmt, subtype, exact):
    wav = sine(440, SR)
    data = encoded(wav, SR, fmt, subtype)
    path = tmp_path / f"x.{fmt.lower()}"
    path.write_bytes(data)
    for src in (path, data):
        got, sr = load_audio(src)
        assert sr == SR and got.dtype == np.float32 and got.ndim == 1
        assert abs(len(got) - len(wav)) <= 0.01 * SR  # lossy codecs may pad a few ms
        assert abs(peak_hz(got, sr) - 440) < 2
        if exact:
            assert np.abs(got - wav).max() <= 1 / 32768


def test_load_resamples_to_target(tmp_path):
    data = encoded(sine(1000, 44100), 44100, "FLAC", "PCM_16")
    got, sr = load_audio(data, target_sr=SR)
    assert sr == SR and abs(len(got) - SR) <= 1
    assert abs(peak_hz(got, SR) - 1000) < 2


# ----------------------------------------------------------------------------- resample / mono
@pytest.mark.parametrize("sr_in,sr_out,freq", [(44100, 24000, 1000), (16000, 24000, 3000), (48000, 22050, 5000)])
def test_resample_keeps_frequency_and_length_ratio(sr_in, sr_out, freq):
    wav = sine(freq, sr_in, 0.5)
    out = resample(wav, sr_in, sr_out)
    assert out.dtype == np.float32
    assert abs(len(out) - len(wav) * sr_out / sr_in) <= 1
    assert abs(peak_hz(out, sr_out) - freq) < 3
    # steady-state amplitude preserved (pass-band), away from the edges
    mid = out[len(out) // 4: 3 * len(out) // 4]
    assert abs(np.abs(mid).max() - 0.5) < 0.01


def test_resample_same_rate_and_multichannel_and_errors():
    wav = sine(440, SR, 0.1)
    same = resample(wav, SR, SR)
    np.testing.assert_array_equal(same, wav)
    assert same is not wav
    st = np.stack([wav, -wav], axis=1)
    assert resample(st, SR, 16000).shape == (1600, 2)
    with pytest.raises(ValueError, match="sr_out"):
        resample(wav, SR, -1)
    with pytest.raises(ValueError, match="sr_in"):
        resample(wav, 24000.5, SR)
    with pytest.raises(ValueError, match="empty"):
        resample(np.zeros(0, np.float32), SR, 16000)


def test_stereo_to_mono_is_the_mean(tmp_path):
    left, right = sine(440, SR, 0.2), sine(660, SR, 0.2, amp=0.25)
    st = np.stack([left, right], axis=1)
    np.testing.assert_allclose(to_mono(st), (left + right) / 2, atol=1e-7)
    path = tmp_path / "st.flac"
    sf.write(str(path), st, SR, subtype="PCM_24")
    mono, _ = load_audio(path)
    np.testing.assert_allclose(mono, (left + right) / 2, atol=1e-6)
    np.testing.assert_array_equal(to_mono(st[:, :1]), left)
    with pytest.raises(ValueError, match="channels-first"):
        to_mono(st.T)
    with pytest.raises(ValueError, match=r"\(n,\)"):
        to_mono(np.zeros((2, 2, 2)))


# ----------------------------------------------------------------------------- errors
def test_corrupt_and_empty_sources_name_the_file(tmp_path):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF\x00\x00not really a wav file" * 10)
    with pytest.raises(AudioDecodeError, match="broken.wav"):
        load_audio(bad)
    with pytest.raises(AudioDecodeError, match="in memory"):
        load_audio(b"\x00\x01garbage" * 50)
    with pytest.raises(AudioDecodeError, match="my_clip.mp3"):
        load_audio(b"\xff\xfbgarbage" * 50, name="my_clip.mp3")
    empty = tmp_path / "empty.flac"
    empty.write_bytes(b"")
    with pytest.raises(AudioDecodeError, match="empty.flac.*empty"):
        load_audio(empty)
    with pytest.raises(AudioDecodeError, match="empty"):
        load_audio(b"")
    with pytest.raises(FileNotFoundError, match="nope.wav"):
        load_audio(tmp_path / "nope.wav")
    with pytest.raises(TypeError, match="path or bytes"):
        load_audio(123)


def test_header_without_samples_is_an_error(tmp_path):
    path = tmp_path / "zero.wav"
    sf.write(str(path), np.zeros(0, np.float32), SR, subtype="PCM_16")
    with pytest.raises(AudioDecodeError, match="zero.wav.*no samples"):
        read_audio(path)


def test_nan_in_float_file_is_an_error():
    data = encoded(np.array([0.0, np.nan, 0.1], np.float32), SR, "WAV", "FLOAT")
    with pytest.raises(ValueError, match="NaN"):
        load_audio(data)


# ----------------------------------------------------------------------------- datasets field
def test_decode_audio_field_bytes_and_path(tmp_path):
    wav = sine(440, 16000, 0.3)
    data = encoded(wav, 16000, "FLAC", "PCM_16")
    got, sr = decode_audio_field({"bytes": data, "path": "clip_001.flac"})  # hub parquet row
    assert sr == 16000  # native rate, not resampled
    assert np.abs(got - wav).max() <= 1 / 32768
    path = tmp_path / "local.flac"
    path.write_bytes(data)
    got2, sr2 = decode_audio_field({"bytes": None, "path": str(path)})  # local-file dataset
    np.testing.assert_array_equal(got2, got)
    assert sr2 == 16000


def test_decode_audio_field_errors():
    with pytest.raises(ValueError, match="neither 'bytes' nor 'path'"):
        decode_audio_field({"bytes": None, "path": None})
    with pytest.raises(ValueError, match="neither"):
        decode_audio_field({})
    with pytest.raises(TypeError, match="Audio\\(decode=False\\)"):
        decode_audio_field(b"raw bytes")
    with pytest.raises(AudioDecodeError, match="row_7.wav"):
        decode_audio_field({"bytes": b"junk" * 100, "path": "row_7.wav"})
