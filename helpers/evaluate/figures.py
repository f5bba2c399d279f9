"""07's figures and listening table: WER per voice, SIM distribution, MOS per emotion, and an
HTML table of clips with players. Split out of :mod:`helpers.evaluate.report` (which re-exports
them); each takes the per-item table of ``helpers.evaluate.report.evaluate``."""
from __future__ import annotations

import base64
import html
import os
from pathlib import Path

import numpy as np

from .clip_metrics import TARGETS


def breakdown(items, by: str):
    """Mean WER, CER, MOS, SIM and count per ``by`` (``"voice"``, ``"emotion"``, ``"reference"``)."""
    sub = items.dropna(subset=[by])
    g = sub.groupby(by)
    return g.agg(n=("item_id", "size"), wer=("wer", "mean"), cer=("cer", "mean"), mos=("mos", "mean"),
                 sim=("sim", "mean"))


def plot_wer_per_voice(items):
    import matplotlib.pyplot as plt

    b = breakdown(items[items["kind"] == "voice"], "voice")
    fig, ax = plt.subplots(figsize=(7, 3))
    ax.bar(b.index, 100 * b["wer"], color="tab:blue")
    ax.axhline(100 * TARGETS["wer"][1], color="tab:red", ls="--", label="seed target")
    ax.set_ylabel("WER (%)"), ax.set_title("WER per built-in voice"), ax.legend()
    ax.tick_params(axis="x", rotation=45)
    fig.tight_layout()
    return fig


def plot_sim_distribution(items):
    import matplotlib.pyplot as plt

    sims = items.loc[items["kind"] == "clone", "sim"].dropna()
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.hist(sims, bins=np.linspace(-0.2, 1.0, 25), color="tab:green")
    ax.axvline(TARGETS["sim"][1], color="tab:red", ls="--", label="seed target")
    ax.set_xlabel("speaker similarity (cosine)"), ax.set_ylabel("cloning items")
    ax.set_title(f"Speaker similarity, {len(sims)} cloning items"), ax.legend()
    fig.tight_layout()
    return fig


def plot_mos_per_emotion(items):
    import matplotlib.pyplot as plt

    b = breakdown(items, "emotion")
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.bar(b.index, b["mos"], color="tab:purple")
    ax.axhline(TARGETS["mos"][1], color="tab:red", ls="--", label="seed target")
    ax.set_ylim(1, 5), ax.set_ylabel("predicted MOS"), ax.set_title("MOS per emotion"), ax.legend()
    fig.tight_layout()
    return fig


def _audio_tag(path: Path, embed: bool, rel: str) -> str:
    if not embed:
        return f'<audio controls preload="none" src="{html.escape(rel)}"></audio>'
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<audio controls preload="none" src="data:audio/wav;base64,{data}"></audio>'


def listening_html(items, out_dir: str | os.PathLike, max_rows: int | None = None, embed: bool = True) -> str:
    """An HTML table (text, voice, emotion, WER, MOS, player) of the generated clips.
    ``embed=True`` inlines the WAVs (works in Colab output cells); False links ``clips/…``."""
    out_dir = Path(out_dir)
    rows = items if max_rows is None else items.head(max_rows)
    head = "<tr><th>item</th><th>text</th><th>voice / reference</th><th>emotion</th><th>WER</th><th>MOS</th><th>clip</th></tr>"
    body = []
    for _, r in rows.iterrows():
        who = r["voice"] if isinstance(r["voice"], str) else f"clone of {r['reference']}"
        body.append(f"<tr><td>{html.escape(r['item_id'])}</td><td>{html.escape(r['text'])}</td>"
                    f"<td>{html.escape(who)}</td><td>{html.escape(r['emotion'])}</td>"
                    f"<td>{100 * r['wer']:.0f}%</td><td>{r['mos']:.2f}</td>"
                    f"<td>{_audio_tag(out_dir / r['clip'], embed, r['clip'])}</td></tr>")
    return f"<table>{head}{''.join(body)}</table>"
