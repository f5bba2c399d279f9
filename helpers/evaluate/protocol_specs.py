"""The standard zero-shot protocols 07 can run (Seed-TTS-eval test-en, LibriSpeech-PC test-clean):
what each list is, where it lives, how its text is normalised, its size and the published figures
beside which 07 shows ours. Kept apart from the runner (:mod:`helpers.evaluate.protocols`, which
loads the judges) so the run plan can size 07 from ``n_items`` without importing evaluation code.
"""
from __future__ import annotations

import string
from dataclasses import dataclass, field
from typing import Callable

PROTOCOL_HUB_REPO = "k2-fsa/TTS_eval_datasets"  # Hub dataset holding both lists and their audio
AUDIO_EXTS = (".wav", ".flac")


# ----------------------------------------------------------------------------- normalisers
def _cjk_punctuation() -> str:
    from zhon.hanzi import punctuation  # pip install zhon (requirements.txt)

    return punctuation


def seedtts_normalize(text: str) -> str:
    """Seed-TTS-eval's English WER text: punctuation (ASCII + ``zhon.hanzi``) removed except
    the ASCII apostrophe, one pass of double-space collapsing, lower case. Numbers stay as
    written."""
    if not isinstance(text, str):
        raise TypeError(f"text must be str, got {type(text).__name__}")
    for ch in string.punctuation + _cjk_punctuation():
        if ch != "'":
            text = text.replace(ch, "")
    return text.replace("  ", " ").lower()


def f5_normalize(text: str) -> str:
    """F5-TTS's English WER text for LibriSpeech-PC: *all* punctuation (ASCII + ``zhon.hanzi``)
    removed, apostrophe included, one pass of double-space collapsing, lower case."""
    if not isinstance(text, str):
        raise TypeError(f"text must be str, got {type(text).__name__}")
    for ch in string.punctuation + _cjk_punctuation():
        text = text.replace(ch, "")
    return text.replace("  ", " ").lower()


# ----------------------------------------------------------------------------- protocols
@dataclass(frozen=True)
class Published:
    """A published result on a protocol. ``status``: "quoted" (copied from ``source``, not
    re-run here) or "unverified" (stated elsewhere, not found in a source we could read)."""

    system: str
    wer: float | None  # fraction
    sim: float | None
    source: str
    status: str = "quoted"


@dataclass(frozen=True)
class Protocol:
    name: str
    title: str
    list_format: str  # "seedtts" | "f5-librispeech-pc"
    hub_file: str  # archive in PROTOCOL_HUB_REPO
    list_glob: str  # where the item list sits inside the unpacked archive
    fixture_list: str  # relative to assets/eval/protocols
    normalize: Callable[[str], str]
    asr_model: str  # the protocol's ASR, as a faster-whisper name
    asr_beam_size: int
    sim_model: str  # the protocol's SIM judge (what published numbers used)
    licence: str
    published: tuple[Published, ...] = field(default=())
    n_items: int = 0  # items in the full list (the run plan sizes 07 from it; the loaded count is reported)


_COSY = ("CosyVoice README 'Evaluation' table, github.com/FunAudioLLM/CosyVoice @ace7c47 (2026-03-16); "
         "each system's own paper reports it")
PROTOCOLS: dict[str, Protocol] = {
    "seedtts-test-en": Protocol(
        name="seedtts-test-en", title="Seed-TTS-eval test-en", list_format="seedtts",
        hub_file="seedtts_testset.tar.gz", list_glob="**/en/meta.lst", fixture_list="seedtts_testset/en/meta.lst",
        n_items=1088,  # en/meta.lst (F5-TTS, arXiv 2410.06885: "1088 samples"; the README says ~1,000)
        normalize=seedtts_normalize, asr_model="large-v3", asr_beam_size=1,
        sim_model="WavLM-large + ECAPA-TDNN fine-tuned for speaker verification (UniSpeech wavlm_large_finetune.pth)",
        licence="list: seed-tts-eval (BytedanceSpeech); audio: Common Voice, CC0-1.0; Hub copy k2-fsa/TTS_eval_datasets "
                "(card: Apache-2.0)",
        published=(
            Published("Human (ground truth)", 0.0214, 0.734, _COSY),
            Published("Seed-TTS", 0.0225, 0.762, _COSY),
            Published("F5-TTS (0.3B)", 0.0200, 0.647, _COSY),
            Published("Spark-TTS (0.5B)", 0.0198, 0.573, _COSY),
            Published("CosyVoice 2 (0.5B)", 0.0257, 0.659, _COSY),
            Published("HiggsAudio-v2 (3B)", 0.0244, 0.677, _COSY),
        )),
    "librispeech-pc-test-clean": Protocol(
        name="librispeech-pc-test-clean", title="LibriSpeech-PC test-clean, cross-sentence 4-10 s (F5-TTS list)",
        list_format="f5-librispeech-pc", hub_file="librispeech_pc_testset.tar.gz", list_glob="**/*.lst",
        fixture_list="librispeech_pc/librispeech_pc_test_clean_cross_sentence.lst", n_items=1127,
        normalize=f5_normalize, asr_model="large-v3", asr_beam_size=5,
        sim_model="WavLM-large + ECAPA-TDNN fine-tuned for speaker verification (UniSpeech wavlm_large_finetune.pth)",
        licence="list: F5-TTS repo (MIT code); audio: LibriSpeech test-clean, CC BY 4.0; transcripts: LibriSpeech-PC, "
                "CC BY 4.0; Hub copy k2-fsa/TTS_eval_datasets (card: Apache-2.0)",
        published=(
            Published("Ground truth", 0.0223, 0.69, "F5-TTS paper (arXiv 2410.06885), as stated in issue #17; "
                      "the paper's table could not be read from this environment", status="unverified"),
            Published("F5-TTS", 0.0242, 0.66, "F5-TTS paper (arXiv 2410.06885), as stated in issue #17; "
                      "the paper's table could not be read from this environment", status="unverified"),
        )),
}


def get_protocol(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise ValueError(f"unknown protocol {name!r}; choose one of {list(PROTOCOLS)}")
    return PROTOCOLS[name]


# ----------------------------------------------------------------------------- item lists
