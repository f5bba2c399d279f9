"""Tables that explain SNAC codes to a person (notebook 00_snac_test).

Every number is read from the codec object and the token contract, not typed in.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .. import tokens as T
from .signal import log_mel_distance, pesq_wb, stoi
from ..profiles import ASSETS_CORPUS_DIR


def codebook_table(codec, codes, duration_s: float) -> pd.DataFrame:
    """One row per codebook: shape, codes per second (measured and nominal), what it carries."""
    roles = ("coarse: prosody, pitch, speaker identity", "mid: phonetic detail, formants",
             "fine: texture, breathiness, micro-detail")
    rows = []
    for i, c in enumerate(codes):
        c = np.asarray(c)
        rows.append({
            "codebook": f"CB{i + 1}",
            "shape": tuple(c.shape),
            "codes/s (this clip)": round(c.shape[-1] / duration_s, 2),
            "frame rate (Hz, model)": round(codec.frame_rates[i], 2),
            "distinct codes used": int(np.unique(c).size),
            "carries (seed §5)": roles[i] if i < len(roles) else "",
        })
    return pd.DataFrame(rows)


def frame_table(codes, n_frames: int = 3) -> pd.DataFrame:
    """The first ``n_frames`` 7-token frames as the model sees them (token strings, by slot)."""
    cb = [np.asarray(c).reshape(-1) for c in codes]
    n = min(n_frames, cb[0].shape[0])
    rows = []
    for i in range(n):
        parts = [(0, cb[0][i])] + [(1, cb[1][2 * i + k]) for k in range(2)] + [(2, cb[2][4 * i + k]) for k in range(4)]
        rows.append({f"slot {s} (CB{b + 1})": T.audio_token(b, int(code)) for s, (b, code) in enumerate(parts)})
    return pd.DataFrame(rows, index=[f"frame {i}" for i in range(n)])


def token_budget_table(codec, durations_s=(1, 10, 30), context: int = 8192,
                       text_tokens_per_second: float = 4.0, prompt_overhead: int = 12) -> pd.DataFrame:
    """Tokens a clip costs: audio (frames × 7) + transcript + structure tokens, vs the context.

    ``text_tokens_per_second``: BPE tokens of transcript per second of speech (~2.7
    words/s ≈ 3.5–4 LLaMA tokens/s). ``prompt_overhead``: BOS, markers, emotion, voice.
    A cloned voice adds the reference clip's frames (same rate) to the prompt.
    """
    rows = []
    for d in durations_s:
        frames = int(np.ceil(d * codec.sample_rate / codec.samples_per_frame))
        audio = frames * T.FRAME_SIZE + 1  # + <|audio_end|>
        total = audio + int(round(d * text_tokens_per_second)) + prompt_overhead
        rows.append({"clip (s)": d, "frames": frames, "audio tokens": audio, "total tokens": total,
                     "with 10 s reference": total + int(np.ceil(10 * codec.tokens_per_second)),
                     f"share of {context}": f"{total / context:.0%}", "fits": total <= context})
    return pd.DataFrame(rows)


def round_trip_quality(ref: np.ndarray, rec: np.ndarray, sr: int) -> pd.DataFrame:
    """PESQ (wideband), STOI (both at 16 kHz) and log-mel distance of a reconstruction."""
    return pd.DataFrame([{
        "PESQ-WB": round(pesq_wb(ref, rec, sr), 3),
        "STOI": round(stoi(ref, rec, sr), 3),
        "log-mel distance": round(log_mel_distance(ref, rec, sr), 3),
    }])


def bundled_clip(index: int = 0):
    """Path and transcript of utterance ``index`` of the bundled espeak corpus (assets/corpus)."""

    meta = ASSETS_CORPUS_DIR / "metadata.csv"
    if not meta.exists():
        raise FileNotFoundError(f"{meta} is missing; build the corpus with: python scripts/make_assets.py")
    df = pd.read_csv(meta)
    if not 0 <= index < len(df):
        raise IndexError(f"the corpus has {len(df)} utterances; index {index} is out of range")
    row = df.iloc[index]
    return ASSETS_CORPUS_DIR / row["file"], str(row["text"])


def plot_spectrograms(signals: dict, sr: int):
    """Log-mel spectrograms side by side (one panel per named signal); returns the figure."""
    import librosa
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(signals), figsize=(5 * len(signals), 3), squeeze=False)
    for ax, (name, x) in zip(axes[0], signals.items()):
        mel = librosa.feature.melspectrogram(y=np.asarray(x, dtype=np.float32), sr=sr, n_fft=1024,
                                             hop_length=256, n_mels=80)
        ax.imshow(librosa.power_to_db(mel, ref=np.max), origin="lower", aspect="auto",
                  extent=(0, len(x) / sr, 0, 80), vmin=-80, vmax=0, cmap="magma")
        ax.set(title=name, xlabel="seconds", ylabel="mel bin")
    fig.tight_layout()
    return fig
