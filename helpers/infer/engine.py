"""The inference engine: ``OptimumTTS`` (seed §8 API).

::

    tts = OptimumTTS.from_pretrained("optimumai/OptimumLLM-Audio-1.0")   # hub id, folder or run dir
    wav = tts.generate("Welcome to OptimumAI.", speaker="male_us_01", emotion="friendly")
    wav = tts.generate("This is my cloned voice.", audio_prompt="reference_voice.wav", emotion="excited")
    mix = tts.generate_dialogue([("speaker1", "Welcome to the show!"), ("speaker2", "Thanks for having me.")],
                                speaker1="male_us_01", speaker2="custom_voice.wav")
    for chunk in tts.stream("A long answer ..."): play(chunk)
    tts.save(wav, "out.wav")                                            # 24 kHz 16-bit WAV

Pipeline per call: text frontend (:func:`helpers.text.prepare`: inline ``[happy]``
tags, normalization, long text cut into chunks of <= ``max_chunk_seconds``) ->
one prompt per chunk (:meth:`TokenLayout.build_prompt`, every chunk with the same
voice: the same voice token or the same reference frames, so the voice stays
consistent) -> constrained decoding (:mod:`helpers.infer.generation`) -> SNAC decoding
-> chunks joined with short equal-power crossfades.

SNAC decoding (deterministic, position-indexed noise; incremental streaming; crossfades)
lives in :mod:`helpers.infer.snac_decode`; 

Seeds: a call's ``seed`` makes it reproducible; chunk ``k`` of a text uses
``seed + k`` and dialogue turn ``i`` uses ``seed + 1000 * i`` as its base. Each
row of a batch has its own generator, so a batch equals one-by-one calls.
"""
from __future__ import annotations

import json
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .. import audio as au
from ..models import COMPLETE_MARKER, load_base, load_stage
from ..profiles import FINAL_MODEL_DIR, RunPaths
from .emotions import check_emotion
from .generation import AudioDecoder, Generated, LengthGuard, LoopGuard, SamplingConfig
from ..tokens import DEFAULT_EMOTION, VOICES, TokenLayout, emotion_token
from .voices import ReferenceAudioError, Voice, VoiceProfile, clone_voice, resolve_voice
from ..codec import SnacCodec
from .best_of import generate_best_of
from .snac_decode import FrameDecoder, Joiner, StreamDecoder
from .decode_step import CompiledDecoding

DEFAULT_SNAC = "hubertsiuzdak/snac_24khz"
INFERENCE_CONFIG = "optimum_tts.json"  # optional file in a model folder: {"snac_model": ...}
DEFAULT_VOICE = VOICES[0]  # used when neither speaker nor audio_prompt is given
# ----------------------------------------------------------------------------- errors
class SpokenTextTooLongError(ValueError):
    """The text's spoken (normalized) form is over the engine's ``max_spoken_chars``."""

    def __init__(self, written: int, spoken: int, limit: int):
        super().__init__(f"text is {spoken:,} characters when spoken ({written:,} as written); at most "
                         f"{limit:,} spoken characters are allowed: split it over several requests")
        self.written, self.spoken, self.limit = written, spoken, limit


# ----------------------------------------------------------------------------- results
@dataclass
class ChunkInfo:
    """One generated chunk: its text, emotion, seed, codes and why generation stopped."""

    text: str
    emotion: str
    seed: int
    codes: list
    n_frames: int
    stop_reason: str
    loop: object = None


@dataclass
class SynthesisResult:
    """``audio`` float32 ``(n,)`` at ``sample_rate`` Hz plus what made it."""

    audio: np.ndarray
    sample_rate: int
    voice: str
    chunks: list[ChunkInfo] = field(default_factory=list)
    seconds: float = 0.0  # wall time
    removed: tuple = ()  # characters the speakable-text guard dropped: (("U+200B ZERO WIDTH SPACE", 2), ...)

    @property
    def duration(self) -> float:
        return len(self.audio) / self.sample_rate

    @property
    def rtf(self) -> float:
        """Real-time factor: generation time / audio duration (< 1 is faster than real time)."""
        return self.seconds / max(self.duration, 1e-9)


@dataclass
class Turn:
    """One dialogue turn inside the mix: ``audio[start:end]`` of the mix is this turn."""

    index: int
    speaker: str
    voice: str
    text: str
    start: int
    end: int
    audio: np.ndarray
    removed: tuple = ()  # characters the speakable-text guard dropped from this turn's text


@dataclass
class DialogueResult:
    """The mix (float32 ``(n,)`` at ``sample_rate``) and its turns, in script order.
    ``np.asarray(result)`` is the mix, so it can be used where a waveform is expected."""

    audio: np.ndarray
    sample_rate: int
    turns: list[Turn]

    def __array__(self, dtype=None, copy=None):
        return self.audio if dtype is None else self.audio.astype(dtype)

    def __len__(self) -> int:
        return len(self.audio)


class AudioStream:
    """Iterator of float32 audio chunks (24 kHz) from :meth:`OptimumTTS.stream`.

    After iteration: ``time_to_first_audio_s`` (call -> first chunk handed out),
    ``seconds`` (total wall time), ``chunks`` (:class:`ChunkInfo` per text chunk).
    """

    def __init__(self, gen_fn):
        self._gen_fn = gen_fn
        self.time_to_first_audio_s: float | None = None
        self.seconds: float | None = None
        self.chunks: list[ChunkInfo] = []
        self.removed: tuple = ()  # characters the speakable-text guard dropped (see SynthesisResult)

    def __iter__(self):
        t0 = time.perf_counter()
        for piece in self._gen_fn(self):
            if len(piece) == 0:
                continue
            if self.time_to_first_audio_s is None:
                self.time_to_first_audio_s = time.perf_counter() - t0
            yield piece
        self.seconds = time.perf_counter() - t0


# ----------------------------------------------------------------------------- loading
def _default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _default_dtype(device: torch.device):
    # bf16 halves memory and doubles speed on Ampere+; CPU matmuls stay in float32.
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32 if device.type == "cpu" else torch.float16


def find_model_folder(path: str | os.PathLike) -> Path:
    """The folder of weights to load for ``path``.

    ``path`` may be a model folder (``config.json``: an export, a hub snapshot, a
    stage folder with ``COMPLETE.json``), a stage folder of a run (its final
    ``model/``), or a run directory (the final model of the latest finished stage,
    4 -> 1). Raises FileNotFoundError naming what was looked for.
    """
    p = Path(path).expanduser()
    if (p / "config.json").is_file():
        return p  # an export or hub snapshot: no training module is imported (pip install has no [train])
    if (p / FINAL_MODEL_DIR / COMPLETE_MARKER).is_file():
        return p / FINAL_MODEL_DIR
    looked = []
    for stage in (4, 3, 2, 1):
        d = RunPaths(p).final_model(stage)
        looked.append(str(d))
        if (d / COMPLETE_MARKER).is_file():
            return d
    raise FileNotFoundError(f"{p} holds no model: expected a model folder (config.json) or a run directory "
                            f"with a finished stage (looked for {', '.join(looked)})")


class OptimumTTS:
    """LLaMA + SNAC text-to-speech with built-in voices, cloning, emotions, dialogue, streaming.

    Build it with :meth:`from_pretrained`, or directly from a loaded model, tokenizer
    (extended with the token contract) and :class:`helpers.codec.SnacCodec`.
    ``accent``: text normalization ("us" or "uk"); ``snac_seed``: seed of the SNAC
    decoder's noise table; ``length_guard`` / ``loop_guard``: see
    :mod:`helpers.infer.generation`. ``max_spoken_chars``: refuse a text whose spoken
    (normalized) form is longer (:meth:`check_text`); None = no limit (long text is cut
    into chunks). ``compile``: "auto" (default: compiled decoding on CUDA, eager on CPU), True
    or False; ``compile_backend``: the ``torch.compile`` backend (tests use "aot_eager" on CPU).
    Compiled decoding (:class:`helpers.infer.decode_step.CompiledDecoding`) serves every entry
    point - generate, generate_batch, generate_cloned, stream, dialogue, best-of-N and the
    server's HF backend - with the same frames as eager decoding; :meth:`warm_up` compiles
    its buckets ahead of the first request.
    """

    def __init__(self, model, tokenizer, codec, *, accent: str = "us", snac_seed: int = 0,
                 length_guard: LengthGuard = LengthGuard(), loop_guard: LoopGuard | None = LoopGuard(),
                 coverage: dict | None = None, max_spoken_chars: int | None = None, compile="auto",
                 compile_backend="inductor"):
        if max_spoken_chars is not None and (isinstance(max_spoken_chars, bool) or int(max_spoken_chars) < 1):
            raise ValueError(f"max_spoken_chars must be a positive int or None, got {max_spoken_chars!r}")
        self.max_spoken_chars = None if max_spoken_chars is None else int(max_spoken_chars)
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.codec = codec
        self.layout = TokenLayout.from_tokenizer(tokenizer)
        self.accent = accent
        self.length_guard, self.loop_guard = length_guard, loop_guard
        self.frame_decoder = FrameDecoder(codec, seed=snac_seed)
        self._voice_cache: dict = {}
        self.coverage = coverage  # optimum_tts.json "coverage": trained emotions, minutes per voice x emotion
        self.compiled = make_compiled(self.model, compile, compile_backend)  # None: eager decoding

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, *, snac: str | None = None, device=None, dtype=None,
                        accent: str = "us", verify: bool = True, **kw) -> "OptimumTTS":
        """Load from a hub id, a model folder or a run directory (see :func:`find_model_folder`).

        ``snac``: codec name or folder (default: ``optimum_tts.json``'s ``snac_model`` in
        the model folder, else ``hubertsiuzdak/snac_24khz``; tests pass
        :data:`helpers.profiles.RANDOM_SNAC_24KHZ`). ``device``: default CUDA if present,
        else CPU. ``dtype``: default bfloat16 on CUDA (float16 without bf16 support),
        float32 on CPU. ``verify``: check SHA-256 of a stage folder's files.
        """

        device = torch.device(device) if device is not None else _default_device()
        dtype = dtype if dtype is not None else _default_dtype(device)
        p = Path(name_or_path).expanduser()
        if p.exists():
            folder = find_model_folder(p)
            if (folder / COMPLETE_MARKER).is_file():
                model, tok = load_stage(folder, dtype=dtype, verify=verify)
            else:
                model, tok = load_base(folder, dtype=dtype)
            cfg_file = folder / INFERENCE_CONFIG
            info = json.loads(cfg_file.read_text()) if cfg_file.is_file() else {}
        else:
            model, tok = load_base(str(name_or_path), dtype=dtype)
            info = _hub_inference_config(str(name_or_path))
        snac_name = snac or info.get("snac_model")
        kw.setdefault("coverage", info.get("coverage"))
        model = model.to(device=device, dtype=dtype)
        codec = SnacCodec.load(snac_name or DEFAULT_SNAC, device=device)
        return cls(model, tok, codec, accent=accent, **kw)

    @staticmethod
    def write_inference_config(folder: str | os.PathLike, snac_model: str = DEFAULT_SNAC) -> Path:
        """Write ``optimum_tts.json`` naming the codec into a model folder (for export)."""
        out = Path(folder) / INFERENCE_CONFIG
        out.write_text(json.dumps({"snac_model": snac_model}, indent=1) + "\n")
        return out

    @property
    def sample_rate(self) -> int:
        return self.codec.sample_rate

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # ------------------------------------------------------------------ voices
    def clone_voice(self, audio, name: str | None = None) -> VoiceProfile:
        """A reusable :class:`VoiceProfile` from a reference clip (path, array, (array, sr)).
        ``profile.save("me.json")``; later ``generate(..., speaker="me.json")``."""
        return clone_voice(audio, self.codec, name=name)

    def _voice(self, speaker=None, audio_prompt=None) -> Voice:
        if speaker is not None and audio_prompt is not None:
            raise ValueError("give either speaker= (a built-in voice or a saved profile) or audio_prompt= "
                             "(a reference clip), not both")
        spec = audio_prompt if audio_prompt is not None else (speaker if speaker is not None else DEFAULT_VOICE)
        key = spec if isinstance(spec, (str, os.PathLike)) else None
        if key is not None and str(key) in self._voice_cache:
            return self._voice_cache[str(key)]
        v = resolve_voice(spec, self.codec)
        if key is not None:
            self._voice_cache[str(key)] = v
        return v

    # ------------------------------------------------------------------ text
    def check_text(self, text: str):
        """The speakable-text guard and the spoken length limit, before any prompt is built.

        Returns a :class:`helpers.text.SpokenText` (``.text`` the spoken form, ``.removed`` the
        control / zero-width / emoji characters dropped, which never reach the tokenizer).
        Raises :class:`helpers.text.UnspeakableTextError` (a ``ValueError`` quoting the input)
        when nothing speakable is left, and :class:`SpokenTextTooLongError` when the spoken form
        is longer than ``max_spoken_chars`` (the limit counts what the model reads: "$1,000,000"
        is 19 spoken characters, 4,000 digits about 16,000).
        """
        from ..text import speakable
        from ..text.guard import UnspeakableTextError, describe_input

        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        if not text.strip():
            raise UnspeakableTextError(f"text {describe_input(text)} is empty: nothing speakable to synthesize")
        spoken = speakable(text, accent=self.accent)
        if self.max_spoken_chars is not None and len(spoken) > self.max_spoken_chars:
            raise SpokenTextTooLongError(len(text), len(spoken), self.max_spoken_chars)
        return spoken

    # ------------------------------------------------------------------ prompts
    def plan(self, text: str, voice: Voice, emotion: str | None = None, seed: int = 0,
             max_chunk_seconds: float = 20.0) -> list[dict]:
        """The chunks a text becomes: dicts with ``text``, ``emotion``, ``seed``, ``prompt``
        (token ids ending with ``<|audio_start|>``), ``max_frames`` (length guard) and ``removed``
        (what the speakable-text guard dropped). Raises as :meth:`check_text` does."""
        from ..text import prepare

        spoken = self.check_text(text)
        if emotion is not None:
            emotion_token(emotion)  # raises, listing the valid emotions
        # the spoken form normalizes to itself: one pass over the digits, not two
        segments = prepare(spoken.text, accent=self.accent, max_seconds=max_chunk_seconds)
        fps = self.codec.sample_rate / self.codec.samples_per_frame
        ref = voice.profile.codes if voice.profile is not None else None
        out = []
        for k, seg in enumerate(segments):
            emo = seg.emotion or emotion or DEFAULT_EMOTION
            check_emotion(self.coverage, emo, voice.builtin)  # refuses an untrained emotion, warns for a pair
            ids = self.tokenizer.encode(seg.text, add_special_tokens=False)
            prompt = self.layout.build_prompt(ids, emotion=emo, voice=voice.builtin, reference_codes=ref,
                                              bos_id=self.tokenizer.bos_token_id)
            out.append(dict(text=seg.text, emotion=emo, seed=int(seed) + k, prompt=prompt,
                            max_frames=self.length_guard.max_frames(seg.text, fps), removed=spoken.removed))
        return out

    def _sampling(self, temperature, top_p, top_k, repetition_penalty) -> SamplingConfig:
        d = SamplingConfig()
        return SamplingConfig(temperature=d.temperature if temperature is None else temperature,
                              top_p=d.top_p if top_p is None else top_p,
                              top_k=d.top_k if top_k is None else top_k,
                              repetition_penalty=d.repetition_penalty if repetition_penalty is None
                              else repetition_penalty)

    def decoder(self, jobs: list[dict], sampling: SamplingConfig, **kw) -> AudioDecoder:
        """The :class:`AudioDecoder` of a batch of planned chunks (compiled when the engine is)."""
        fps = self.codec.sample_rate / self.codec.samples_per_frame
        return AudioDecoder(self.model, self.layout, [j["prompt"] for j in jobs], seeds=[j["seed"] for j in jobs],
                            max_frames=[j["max_frames"] for j in jobs], sampling=sampling,
                            loop_guard=self.loop_guard, frames_per_second=fps, compiled=self.compiled, **kw)

    def warm_up(self, batches: Sequence[int] = (1,), lengths: Sequence[int] = (1024,), text: str = "Warm up.",
                sampling: SamplingConfig | None = None) -> dict:
        """Compile the decode step's buckets before the first request (a no-op when eager).

        One short generation per batch size in ``batches`` and cache length in ``lengths``
        (rounded up to their buckets). Returns ``{"seconds", "compiles", "compile_seconds", "cudagraphs"}``
        (``cudagraphs``: :meth:`CompiledDecoding.cudagraph_report` - on CUDA, whether the steps were
        recorded as CUDA graphs or inductor skipped them and why; None when eager)."""
        return warm_up(self, batches, lengths, text, sampling or SamplingConfig())

    def _run_jobs(self, jobs: list[dict], sampling: SamplingConfig, batch_size: int) -> list[Generated]:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        results: list[Generated] = []
        for i in range(0, len(jobs), batch_size):
            results += self.decoder(jobs[i:i + batch_size], sampling).run()
        return results

    # ------------------------------------------------------------------ generate
    def generate(self, text: str | Sequence[str], speaker=None, audio_prompt=None, emotion: str | None = None, *,
                 seed: int = 0, temperature: float | None = None, top_p: float | None = None,
                 top_k: int | None = None, repetition_penalty: float | None = None,
                 max_chunk_seconds: float = 20.0, crossfade_ms: float = 40.0, batch_size: int = 8,
                 return_result: bool = False, candidates: int = 1, judge=None):
        """Speech for ``text``: float32 ``(n,)`` at 24 kHz (a list of them for a list of texts).

        ``speaker``: built-in voice (:data:`VOICES`) or a saved profile path / VoiceProfile;
        ``audio_prompt``: a reference clip to clone (path, array at 24 kHz, (array, sr)).
        Neither: the first built-in voice, ``male_us_01``. ``emotion``: one of
        :data:`EMOTIONS` (default neutral); inline ``[happy]`` tags override it for the text
        after them. Sampling defaults: :class:`helpers.infer.generation.SamplingConfig`
        (temperature 0.6, top-p 0.95, top-k 50, repetition penalty 1.1; temperature 0 is
        greedy). ``seed``: same seed, same audio (each text of a list uses ``seed``, so a
        list equals one-by-one calls). Long text is cut into chunks of at most
        ``max_chunk_seconds`` (estimated), generated in batches of ``batch_size`` with
        the same voice, joined with ``crossfade_ms`` equal-power crossfades.
        ``return_result``: a :class:`SynthesisResult` (audio, chunks, stop reasons, RTF).
        ``candidates=N`` (> 1, one text): best-of-N, the candidate ``judge.asr`` transcribes
        with the lowest CER, ties to speaker similarity (:mod:`helpers.infer.best_of`; with
        ``return_result`` a :class:`helpers.infer.best_of.BestOf`).
        """
        if candidates != 1:

            return generate_best_of(self, text, candidates=candidates, judge=judge, return_result=return_result,
                                    speaker=speaker, audio_prompt=audio_prompt, emotion=emotion, seed=seed,
                                    temperature=temperature, top_p=top_p, top_k=top_k,
                                    repetition_penalty=repetition_penalty, max_chunk_seconds=max_chunk_seconds,
                                    crossfade_ms=crossfade_ms, batch_size=batch_size)
        if isinstance(text, (list, tuple)):
            return self.generate_batch(list(text), speaker=speaker, audio_prompt=audio_prompt, emotion=emotion,
                                       seed=seed, temperature=temperature, top_p=top_p, top_k=top_k,
                                       repetition_penalty=repetition_penalty, max_chunk_seconds=max_chunk_seconds,
                                       crossfade_ms=crossfade_ms, batch_size=batch_size,
                                       return_result=return_result)
        return self.generate_batch([text], speaker=speaker, audio_prompt=audio_prompt, emotion=emotion, seed=seed,
                                   temperature=temperature, top_p=top_p, top_k=top_k,
                                   repetition_penalty=repetition_penalty, max_chunk_seconds=max_chunk_seconds,
                                   crossfade_ms=crossfade_ms, batch_size=batch_size, return_result=return_result)[0]

    def generate_batch(self, texts: Sequence[str], speaker=None, audio_prompt=None, emotion: str | None = None, *,
                       seed: int | Sequence[int] = 0, temperature=None, top_p=None, top_k=None,
                       repetition_penalty=None, max_chunk_seconds: float = 20.0, crossfade_ms: float = 40.0,
                       batch_size: int = 8, return_result: bool = False) -> list:
        """Several texts in one call (all chunks batched together); result ``i`` equals
        ``generate(texts[i], seed=seeds[i], ...)``. ``seed``: one int for all, or one per text."""
        t0 = time.perf_counter()
        if not texts:
            raise ValueError("texts is empty")
        seeds = [int(seed)] * len(texts) if isinstance(seed, (int, np.integer)) else [int(s) for s in seed]
        if len(seeds) != len(texts):
            raise ValueError(f"got {len(seeds)} seeds for {len(texts)} texts")
        voice = self._voice(speaker, audio_prompt)
        sampling = self._sampling(temperature, top_p, top_k, repetition_penalty)
        plans = [self.plan(t, voice, emotion, s, max_chunk_seconds) for t, s in zip(texts, seeds)]
        flat = [j for p in plans for j in p]
        gens = self._run_jobs(flat, sampling, batch_size)
        out, pos = [], 0
        for p in plans:
            res = self._assemble(p, gens[pos:pos + len(p)], voice, crossfade_ms)
            pos += len(p)
            res.seconds = time.perf_counter() - t0
            out.append(res if return_result else res.audio)
        return out

    def generate_cloned(self, texts: Sequence[str], audio_prompts: Sequence, *, seeds: Sequence[int],
                        emotion: str | None = None, max_chunk_seconds: float = 20.0, crossfade_ms: float = 40.0,
                        batch_size: int = 8, return_result: bool = False) -> list:
        """Each text in the voice of its own reference clip, every chunk batched together (07's zero-shot
        protocols): result ``i`` equals ``generate(texts[i], audio_prompt=audio_prompts[i], seed=seeds[i])``.
        All references are prepared before anything is generated; an unusable one raises
        :class:`ReferenceAudioError` with ``index`` set to its position."""
        if not texts or len(texts) != len(audio_prompts) or len(texts) != len(seeds):
            raise ValueError(f"need as many texts, prompts and seeds (got {len(texts)}, {len(audio_prompts)}, "
                             f"{len(seeds)}), at least one")
        t0 = time.perf_counter()
        voices = []
        for i, pr in enumerate(audio_prompts):
            try:
                voices.append(self._voice(None, pr))
            except ReferenceAudioError as e:
                e.index = i
                raise
        sampling = self._sampling(None, None, None, None)
        plans = [self.plan(t, v, emotion, int(s), max_chunk_seconds) for t, v, s in zip(texts, voices, seeds)]
        gens = self._run_jobs([j for p in plans for j in p], sampling, batch_size)
        out, pos = [], 0
        for p, v in zip(plans, voices):
            res = self._assemble(p, gens[pos:pos + len(p)], v, crossfade_ms)
            pos += len(p)
            res.seconds = time.perf_counter() - t0
            out.append(res if return_result else res.audio)
        return out

    def _assemble(self, plan: list[dict], gens: list[Generated], voice: Voice, crossfade_ms: float):
        joiner = Joiner(crossfade=round(crossfade_ms * self.sample_rate / 1000))
        parts, chunks = [], []
        for job, g in zip(plan, gens):
            parts.append(joiner.start_piece())
            parts.append(joiner.add(self.frame_decoder.decode(g.codes)))
            parts.append(joiner.end_piece())
            chunks.append(ChunkInfo(job["text"], job["emotion"], job["seed"], g.codes, g.n_frames, g.stop_reason,
                                    g.loop))
        parts.append(joiner.finish())
        return SynthesisResult(np.concatenate(parts), self.sample_rate, voice.label, chunks,
                               removed=plan[0].get("removed", ()) if plan else ())

    # ------------------------------------------------------------------ streaming
    def stream(self, text: str, speaker=None, audio_prompt=None, emotion: str | None = None, *, seed: int = 0,
               temperature=None, top_p=None, top_k=None, repetition_penalty=None, max_chunk_seconds: float = 20.0,
               crossfade_ms: float = 40.0, chunk_frames: int = 4, first_chunk_frames: int = 2) -> AudioStream:
        """Like :meth:`generate` but yields float32 audio pieces as frames are generated.

        The first piece comes after ``first_chunk_frames`` + ``STREAM_LOOKAHEAD`` frames, later
        ones every ``chunk_frames`` frames. Concatenated, the pieces equal ``generate(...)`` with
        the same arguments to within ``STREAM_TOLERANCE`` (both in :mod:`helpers.infer.snac_decode`).
        Returns an :class:`AudioStream` (``time_to_first_audio_s`` after iterating).
        """
        voice = self._voice(speaker, audio_prompt)
        sampling = self._sampling(temperature, top_p, top_k, repetition_penalty)
        plan = self.plan(text, voice, emotion, seed, max_chunk_seconds)

        def run(stream: AudioStream):
            joiner = Joiner(crossfade=round(crossfade_ms * self.sample_rate / 1000))
            for job in plan:
                yield joiner.start_piece()
                sd = StreamDecoder(self.frame_decoder, chunk_frames=chunk_frames,
                                   first_chunk_frames=first_chunk_frames)
                dec = self.decoder([job], sampling)
                for ev in dec:
                    if ev.frame is not None:
                        codes = self.layout.tokens_to_codes(ev.frame)
                        yield joiner.add(sd.push(codes))
                yield joiner.add(sd.flush())
                yield joiner.end_piece()
                g = dec.results[0]
                stream.chunks.append(ChunkInfo(job["text"], job["emotion"], job["seed"], g.codes, g.n_frames,
                                               g.stop_reason, g.loop))
            yield joiner.finish()

        out = AudioStream(run)
        out.removed = plan[0]["removed"]
        return out

    # ------------------------------------------------------------------ dialogue
    def generate_dialogue(self, script: Sequence, *, pause_s: float = 0.4, seed: int = 0, emotion: str | None = None,
                          temperature=None, top_p=None, top_k=None, repetition_penalty=None,
                          max_chunk_seconds: float = 20.0, crossfade_ms: float = 40.0, batch_size: int = 8,
                          **voices) -> DialogueResult:
        """Render ``script`` (``(speaker, text)`` or ``(speaker, text, emotion)`` items) in order.

        Each speaker name in the script needs a voice keyword: ``speaker1="male_us_01",
        speaker2="custom_voice.wav"`` (built-in name, reference clip, saved profile or
        VoiceProfile). Turns are joined with ``pause_s`` seconds of silence; turn ``i``
        uses seed ``seed + 1000 * i``. Returns a :class:`DialogueResult` (mix + turns).
        """
        if not isinstance(script, (list, tuple)) or not script:
            raise ValueError("script must be a non-empty list of (speaker, text) tuples")
        if not pause_s >= 0:
            raise ValueError(f"pause_s must be >= 0 seconds, got {pause_s}")
        turns = []
        for i, item in enumerate(script):
            if not isinstance(item, (list, tuple)) or len(item) not in (2, 3):
                raise ValueError(f"script item {i} must be (speaker, text) or (speaker, text, emotion), got {item!r}")
            turns.append((item[0], item[1], item[2] if len(item) == 3 else emotion))
        missing = sorted({s for s, _, _ in turns if s not in voices})
        if missing:
            raise ValueError(f"no voice for speaker(s) {missing}: pass them as keywords, e.g. "
                             f"{missing[0]}='male_us_01' (built-in voices: {', '.join(VOICES)}) or a reference clip")
        resolved = {name: self._voice(speaker=v) if not _is_audio_like(v) else self._voice(audio_prompt=v)
                    for name, v in voices.items() if name in {s for s, _, _ in turns}}
        sampling = self._sampling(temperature, top_p, top_k, repetition_penalty)
        plans = [self.plan(t, resolved[s], e, seed + 1000 * i, max_chunk_seconds) for i, (s, t, e) in enumerate(turns)]
        gens = self._run_jobs([j for p in plans for j in p], sampling, batch_size)
        mixer = Joiner(crossfade=0, gap=round(pause_s * self.sample_rate))
        parts, out_turns, pos, n = [], [], 0, 0
        for i, ((spk, t, _), p) in enumerate(zip(turns, plans)):
            res = self._assemble(p, gens[pos:pos + len(p)], resolved[spk], crossfade_ms)
            pos += len(p)
            lead = mixer.start_piece()
            body = mixer.add(res.audio)
            tail = mixer.end_piece()
            parts += [lead, body, tail]
            n += len(lead)
            out_turns.append(Turn(i, spk, resolved[spk].label, t, n, n + len(res.audio), res.audio, res.removed))
            n += len(body) + len(tail)
        parts.append(mixer.finish())
        return DialogueResult(np.concatenate(parts), self.sample_rate, out_turns)

    # ------------------------------------------------------------------ output
    def save(self, wav, path: str | os.PathLike) -> Path:
        """Write audio (array or :class:`DialogueResult` / :class:`SynthesisResult`) as a 16-bit WAV
        at the codec's 24 kHz; warns if samples had to be clipped. Returns the path."""
        a = wav.audio if isinstance(wav, (DialogueResult, SynthesisResult)) else np.asarray(wav)
        clipped = au.save_wav(path, a, self.sample_rate)
        if clipped:
            warnings.warn(f"{clipped} sample(s) outside [-1, 1] were clipped when writing {path}", stacklevel=2)
        return Path(path)


def make_compiled(model, compile="auto", backend="inductor"):
    """``compile`` ("auto" | True | False) -> a :class:`CompiledDecoding` for ``model`` or None.
    "auto" compiles on CUDA only: on a CPU the step is compute-bound, and compiling costs more
    than it saves for a short request."""
    if compile not in ("auto", True, False):
        raise ValueError(f"compile must be 'auto', True or False, got {compile!r}")
    if compile == "auto":
        compile = next(model.parameters()).device.type == "cuda"
    return CompiledDecoding(model, backend=backend) if compile else None


def warm_up(tts: "OptimumTTS", batches: Sequence[int], lengths: Sequence[int], text: str,
            sampling: SamplingConfig) -> dict:
    """:meth:`OptimumTTS.warm_up`: one 1-frame generation per (batch, length) bucket."""
    t0 = time.perf_counter()
    comp = tts.compiled
    before = (comp.compiles, comp.compile_seconds) if comp is not None else (0, 0.0)
    if comp is not None:
        (job,) = tts.plan(text, tts._voice(), None, 0)
        job = dict(job, max_frames=1)
        for b in batches:
            for n in lengths:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # 1 frame: the length guard ends it
                    tts.decoder([job] * int(b), sampling, min_cache_length=int(n)).run()
    after = (comp.compiles, comp.compile_seconds) if comp is not None else (0, 0.0)
    return {"seconds": time.perf_counter() - t0, "compiles": after[0] - before[0],
            "compile_seconds": after[1] - before[1],
            "cudagraphs": comp.cudagraph_report() if comp is not None else None}


def _is_audio_like(v) -> bool:
    """True for a reference clip (array, (array, sr), bytes, or an existing non-JSON file)."""
    if isinstance(v, (str, os.PathLike)):
        p = Path(v).expanduser()
        return p.is_file() and p.suffix.lower() != ".json"
    return not isinstance(v, (Voice, VoiceProfile))


__all__ = [
    "OptimumTTS", "SynthesisResult", "ChunkInfo", "DialogueResult", "Turn", "AudioStream", "find_model_folder",
    "DEFAULT_VOICE", "DEFAULT_SNAC", "SpokenTextTooLongError", "make_compiled", "warm_up",
]


def _hub_inference_config(repo_id: str) -> dict:
    """``optimum_tts.json`` of a hub model repo ({} when the repo has none, e.g. a plain LLaMA)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    try:
        return json.loads(Path(hf_hub_download(repo_id, INFERENCE_CONFIG)).read_text())
    except EntryNotFoundError:
        return {}
