"""The token contract: every token string, id, offset and the 7-token frame order.

This is the ONLY module that knows token ids. Everything else asks a
:class:`TokenLayout` (built from the base vocabulary size, or from a tokenizer
that already carries the contract's tokens).

Layout (seed Appendix A, DESIGN.md "Token contract")::

    [0, base)                           base vocabulary (LLaMA 3.2: 128,256 ids)
    [base, base + 3 * 4096)             audio: <|snac1_0|>..<|snac1_4095|>,
                                               <|snac2_0|>..,  <|snac3_0|>..  (contiguous)
    [base + 12288, ...)                 structure, emotion, voice, non-verbal tokens,
                                        in the order of :func:`new_tokens`

A frame is 7 tokens, coarse to fine::

    CB1[i], CB2[2i], CB2[2i+1], CB3[4i], CB3[4i+1], CB3[4i+2], CB3[4i+3]

Prompt (inference) and example (training)::

    [bos] <|text_start|> text <|text_end|> <|emotion:E|>
          <|speaker_start|> (<|speaker:V|> | reference audio frames) <|speaker_end|>
          <|audio_start|> frames... <|audio_end|>

Grammar errors in audio token sequences follow one documented rule
(:func:`tokens_to_codes`): ``on_error="raise"`` (default) raises
:class:`TokenGrammarError` naming the position, the token found and what was
expected; ``on_error="repair"`` drops every frame that contains an invalid
token and a truncated last frame, and returns a :class:`RepairReport` that
counts what was dropped. Nothing is ever silently reinterpreted.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

# ----------------------------------------------------------------------------- audio
N_CODEBOOKS = 3  # SNAC 24 kHz has three codebooks (vq_strides 4, 2, 1)
CODEBOOK_SIZE = 4096  # codes per codebook
AUDIO_VOCAB_SIZE = N_CODEBOOKS * CODEBOOK_SIZE  # 12,288 audio tokens
# Codebook of each slot of a frame and how many tokens of that codebook a frame holds.
FRAME_SLOTS: tuple[int, ...] = (0, 1, 1, 2, 2, 2, 2)
FRAME_SIZE = len(FRAME_SLOTS)  # 7
CODES_PER_FRAME: tuple[int, ...] = (1, 2, 4)  # CB1, CB2, CB3 codes per frame
SNAC_SAMPLE_RATE = 24_000  # Hz: the codec's audio rate
SNAC_HOP = 512  # samples per finest-codebook (CB3) step
SNAC_FRAMES_PER_SECOND = SNAC_SAMPLE_RATE / (SNAC_HOP * max(CODES_PER_FRAME))  # one frame = 2048 samples: 11.72 Hz
AUDIO_TOKENS_PER_SECOND = SNAC_FRAMES_PER_SECOND * FRAME_SIZE  # 82.03 tokens of audio per second

# Cloning references (seed §8: 10-30 s recommended). ONE pair of bounds shared by training
# (helpers.train.sequences draws reference lengths uniformly in this range, bounded by the room the
# context leaves beside the target) and inference (helpers.infer.voices refuses shorter clips and
# crops longer ones), so the model never sees at inference a reference length it never trained on.
# 20 s is the seed's "very good"; 30 s adds little and costs 820 more prompt tokens per example.
REFERENCE_MIN_S = 3.0  # shortest reference trained on / accepted at inference
REFERENCE_MAX_S = 20.0  # longest reference trained on; inference crops longer clips to this


def seconds_to_frames(seconds: float, round_up: bool = False) -> int:
    """Whole SNAC frames (CB1) in ``seconds`` of audio (rounded down, or up)."""
    x = seconds * SNAC_FRAMES_PER_SECOND
    return int(-(-x // 1)) if round_up else int(x)


REFERENCE_MIN_FRAMES = seconds_to_frames(REFERENCE_MIN_S, round_up=True)  # 36 frames = 3.07 s: never under 3 s
REFERENCE_MAX_FRAMES = seconds_to_frames(REFERENCE_MAX_S)  # 234 frames = 19.97 s: never over 20 s


def audio_token(codebook: int, code: int) -> str:
    """``audio_token(0, 5) == '<|snac1_5|>'`` (codebook is 0-based, the name 1-based)."""
    if not 0 <= codebook < N_CODEBOOKS:
        raise ValueError(f"codebook must be in 0..{N_CODEBOOKS - 1}, got {codebook}")
    if not 0 <= code < CODEBOOK_SIZE:
        raise ValueError(f"code must be in 0..{CODEBOOK_SIZE - 1}, got {code}")
    return f"<|snac{codebook + 1}_{code}|>"


# ----------------------------------------------------------------------------- structure
TEXT_START = "<|text_start|>"
TEXT_END = "<|text_end|>"
SPEAKER_START = "<|speaker_start|>"
SPEAKER_END = "<|speaker_end|>"
AUDIO_START = "<|audio_start|>"
AUDIO_END = "<|audio_end|>"
PAD = "<|pad|>"  # padding for batched training/generation; never a training target
STRUCTURE_TOKENS: tuple[str, ...] = (
    TEXT_START, TEXT_END, SPEAKER_START, SPEAKER_END, AUDIO_START, AUDIO_END, PAD,
)

# ----------------------------------------------------------------------------- emotions
# The seed's §12 table, `friendly` (seed §6/§8 examples), then the labels the emotion
# corpora carry (RAVDESS, EmoV-DB, Expresso). Dataset labels are mapped onto these
# names explicitly in the dataset catalog; this list is the closed set of tokens.
SEED_EMOTIONS: tuple[str, ...] = ("neutral", "happy", "sad", "angry", "excited", "whisper", "calm")
EMOTIONS: tuple[str, ...] = SEED_EMOTIONS + (
    "friendly",
    # RAVDESS
    "fearful", "disgusted", "surprised",
    # EmoV-DB
    "amused", "sleepy",
    # Expresso (read + conversational styles that are emotions or voice qualities)
    "confused", "enunciated", "laughing", "bored", "sarcastic", "sympathetic", "awe",
    "desire", "projected",
)
DEFAULT_EMOTION = "neutral"

# Seed §12 "Emotion Control at Inference": relative (pitch, speed, energy) change vs neutral
# for the seed's seven emotions. The assets corpus is made with these offsets and the
# evaluation checks generated speech moves in these directions.
SEED_EMOTION_PROSODY: dict[str, tuple[float, float, float]] = {
    "neutral": (0.0, 0.0, 0.0),
    "happy": (0.15, 0.10, 0.20),
    "sad": (-0.10, -0.15, -0.20),
    "angry": (0.20, 0.05, 0.30),
    "excited": (0.20, 0.20, 0.30),
    "whisper": (-0.20, -0.10, -0.40),
    "calm": (-0.05, -0.10, -0.15),
}


def emotion_token(name: str) -> str:
    if name not in EMOTIONS:
        raise ValueError(f"unknown emotion {name!r}; valid emotions: {', '.join(EMOTIONS)}")
    return f"<|emotion:{name}|>"


# ----------------------------------------------------------------------------- voices
# Seed §8: four US and four British built-in voices.
VOICES: tuple[str, ...] = (
    "male_us_01", "male_us_02", "female_us_01", "female_us_02",
    "male_uk_01", "male_uk_02", "female_uk_01", "female_uk_02",
)


def voice_token(name: str) -> str:
    if name not in VOICES:
        raise ValueError(f"unknown voice {name!r}; built-in voices: {', '.join(VOICES)}")
    return f"<|speaker:{name}|>"


# ----------------------------------------------------------------------------- non-verbal
# Inline tags like [laugh] (seed §15 roadmap: [laugh], [sigh]; plus the usual set of
# paralinguistic events). They live inside the text block.
NONVERBALS: tuple[str, ...] = ("laugh", "chuckle", "sigh", "gasp", "cough", "sniffle", "groan", "yawn", "breath")


def nonverbal_token(name: str) -> str:
    if name not in NONVERBALS:
        raise ValueError(f"unknown non-verbal tag {name!r}; valid tags: {', '.join(NONVERBALS)}")
    return f"<|{name}|>"


def new_tokens() -> list[str]:
    """Every token the contract adds to the base vocabulary, in id order.

    New tokens are only ever appended at the end of this list so that ids of
    existing ones never move.
    """
    toks = [audio_token(cb, c) for cb in range(N_CODEBOOKS) for c in range(CODEBOOK_SIZE)]
    toks += list(STRUCTURE_TOKENS)
    toks += [emotion_token(e) for e in EMOTIONS]
    toks += [voice_token(v) for v in VOICES]
    toks += [nonverbal_token(n) for n in NONVERBALS]
    return toks


N_NEW_TOKENS = AUDIO_VOCAB_SIZE + len(STRUCTURE_TOKENS) + len(EMOTIONS) + len(VOICES) + len(NONVERBALS)


# ----------------------------------------------------------------------------- errors
class TokenGrammarError(ValueError):
    """An audio token sequence breaks the frame grammar.

    Attributes: ``position`` (index into the sequence given), ``token_id`` (what
    was found, or None for a truncated frame) and ``expected`` (a description).
    """

    def __init__(self, position: int, token_id: int | None, expected: str, detail: str = ""):
        self.position, self.token_id, self.expected = position, token_id, expected
        found = "end of sequence" if token_id is None else f"token id {token_id}{detail}"
        super().__init__(f"audio token grammar broken at position {position}: found {found}, expected {expected}")


@dataclass
class RepairReport:
    """What ``tokens_to_codes(..., on_error="repair")`` dropped, counted."""

    frames_kept: int = 0
    frames_dropped: int = 0  # whole frames dropped because one slot held a wrong token
    truncated_tokens: int = 0  # tokens of an incomplete last frame, dropped
    problems: list[str] = field(default_factory=list)  # one line per dropped frame

    @property
    def repaired(self) -> bool:
        return bool(self.frames_dropped or self.truncated_tokens)


# ----------------------------------------------------------------------------- layout
@dataclass(frozen=True)
class TokenLayout:
    """Token ids of the contract on top of a base vocabulary of ``base_vocab_size`` ids."""

    base_vocab_size: int

    def __post_init__(self):
        if self.base_vocab_size <= 0:
            raise ValueError(f"base_vocab_size must be positive, got {self.base_vocab_size}")

    # --- ranges
    @property
    def audio_offset(self) -> int:
        """Id of ``<|snac1_0|>``."""
        return self.base_vocab_size

    @property
    def audio_end_id_exclusive(self) -> int:
        return self.base_vocab_size + AUDIO_VOCAB_SIZE

    @property
    def vocab_size(self) -> int:
        """Base + every contract token (before padding the embedding rows)."""
        return self.base_vocab_size + N_NEW_TOKENS

    def padded_vocab_size(self, multiple: int = 64) -> int:
        """Embedding row count rounded up to ``multiple`` (tensor-core friendly)."""
        return -(-self.vocab_size // multiple) * multiple

    def codebook_range(self, codebook: int) -> range:
        start = self.audio_offset + codebook * CODEBOOK_SIZE
        return range(start, start + CODEBOOK_SIZE)

    def slot_range(self, slot: int) -> range:
        """Allowed ids for slot ``slot`` (0..6) of a frame."""
        return self.codebook_range(FRAME_SLOTS[slot])

    # --- single ids
    def token_id(self, token: str) -> int:
        """Id of any contract token string."""
        try:
            return self._ids()[token]
        except KeyError:
            raise KeyError(f"{token!r} is not a token of the contract") from None

    def _ids(self) -> dict[str, int]:
        cache = self.__dict__.get("_id_cache")
        if cache is None:
            cache = {t: self.base_vocab_size + i for i, t in enumerate(new_tokens())}
            object.__setattr__(self, "_id_cache", cache)
        return cache

    def audio_id(self, codebook: int, code: int) -> int:
        if not 0 <= codebook < N_CODEBOOKS or not 0 <= code < CODEBOOK_SIZE:
            raise ValueError(f"no audio token for codebook {codebook}, code {code}")
        return self.audio_offset + codebook * CODEBOOK_SIZE + code

    def is_audio(self, token_id: int) -> bool:
        return self.audio_offset <= token_id < self.audio_end_id_exclusive

    @property
    def text_start_id(self) -> int:
        return self.token_id(TEXT_START)

    @property
    def text_end_id(self) -> int:
        return self.token_id(TEXT_END)

    @property
    def speaker_start_id(self) -> int:
        return self.token_id(SPEAKER_START)

    @property
    def speaker_end_id(self) -> int:
        return self.token_id(SPEAKER_END)

    @property
    def audio_start_id(self) -> int:
        return self.token_id(AUDIO_START)

    @property
    def audio_end_id(self) -> int:
        return self.token_id(AUDIO_END)

    @property
    def pad_id(self) -> int:
        return self.token_id(PAD)

    def emotion_id(self, name: str) -> int:
        return self.token_id(emotion_token(name))

    def voice_id(self, name: str) -> int:
        return self.token_id(voice_token(name))

    def nonverbal_id(self, name: str) -> int:
        return self.token_id(nonverbal_token(name))

    def slot_masks(self, vocab_size: int | None = None) -> np.ndarray:
        """Boolean (7, V) array: ``masks[k, id]`` is True iff ``id`` may fill frame slot k.

        Used by constrained decoding; V defaults to the padded vocabulary size.
        """
        v = vocab_size or self.padded_vocab_size()
        masks = np.zeros((FRAME_SIZE, v), dtype=bool)
        for k in range(FRAME_SIZE):
            r = self.slot_range(k)
            masks[k, r.start:r.stop] = True
        return masks

    # --- codes <-> tokens
    def codes_to_tokens(self, codes: Sequence[Sequence[int] | np.ndarray]) -> np.ndarray:
        """SNAC codes of one utterance -> flat frame-interleaved token ids.

        ``codes``: three int arrays of shapes (T,), (2T,), (4T,) (a leading batch
        dim of 1 is accepted). Returns int64 array of shape (7T,).
        """
        cb = as_codebooks(codes)
        t = cb[0].shape[0]
        out = np.empty((t, FRAME_SIZE), dtype=np.int64)
        off = self.audio_offset
        out[:, 0] = off + cb[0]
        out[:, 1:3] = off + CODEBOOK_SIZE + cb[1].reshape(t, 2)
        out[:, 3:7] = off + 2 * CODEBOOK_SIZE + cb[2].reshape(t, 4)
        return out.reshape(-1)

    def tokens_to_codes(self, ids: Sequence[int] | np.ndarray, on_error: str = "raise"):
        """Flat frame-interleaved token ids -> SNAC codes (exact inverse of ``codes_to_tokens``).

        ``ids`` must hold audio tokens only (strip ``<|audio_start|>``/``<|audio_end|>``
        first, or use :meth:`extract_audio`). Returns ``[cb1 (T,), cb2 (2T,), cb3 (4T,)]``
        int64 arrays; with ``on_error="repair"`` returns ``(codes, RepairReport)``.

        Rule: a frame is valid iff slot k holds a token of codebook FRAME_SLOTS[k] for
        all 7 slots. ``raise``: the first violation raises TokenGrammarError with its
        position. ``repair``: invalid frames and a truncated tail are dropped, counted.
        """
        if on_error not in ("raise", "repair"):
            raise ValueError(f"on_error must be 'raise' or 'repair', got {on_error!r}")
        arr = np.asarray(ids, dtype=np.int64).reshape(-1)
        n_full = arr.shape[0] // FRAME_SIZE
        tail = arr.shape[0] - n_full * FRAME_SIZE
        frames = arr[: n_full * FRAME_SIZE].reshape(n_full, FRAME_SIZE)
        rel = frames - self.audio_offset  # (T, 7) position inside the audio range
        expected_cb = np.asarray(FRAME_SLOTS)
        ok = (rel >= 0) & (rel < AUDIO_VOCAB_SIZE) & (rel // CODEBOOK_SIZE == expected_cb)
        report = RepairReport()
        if on_error == "raise":
            if not ok.all():
                f, k = map(int, np.argwhere(~ok)[0])
                pos = f * FRAME_SIZE + k
                raise TokenGrammarError(pos, int(arr[pos]), self._expected(k), self._describe(int(arr[pos])))
            if tail:
                raise TokenGrammarError(
                    arr.shape[0], None,
                    f"{FRAME_SIZE - tail} more token(s) to complete the last frame "
                    f"(length {arr.shape[0]} is not a multiple of {FRAME_SIZE})")
            good = frames
        else:
            row_ok = ok.all(axis=1)
            for f in np.flatnonzero(~row_ok):
                k = int(np.argmax(~ok[f]))
                pos = int(f) * FRAME_SIZE + k
                report.problems.append(
                    f"frame {int(f)} dropped: position {pos} holds {self._describe(int(arr[pos]))}, "
                    f"expected {self._expected(k)}")
            good = frames[row_ok]
            report.frames_dropped = int((~row_ok).sum())
            report.frames_kept = int(row_ok.sum())
            report.truncated_tokens = int(tail)
            if tail:
                report.problems.append(f"last {tail} token(s) dropped: incomplete frame")
        rel = good - self.audio_offset
        t = rel.shape[0]
        codes = [
            rel[:, 0].copy(),
            (rel[:, 1:3] - CODEBOOK_SIZE).reshape(2 * t),
            (rel[:, 3:7] - 2 * CODEBOOK_SIZE).reshape(4 * t),
        ]
        return (codes, report) if on_error == "repair" else codes

    def extract_audio(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Token ids after the last ``<|audio_start|>`` up to ``<|audio_end|>`` (or the end)."""
        arr = np.asarray(ids, dtype=np.int64).reshape(-1)
        starts = np.flatnonzero(arr == self.audio_start_id)
        if starts.size == 0:
            raise ValueError(f"no {AUDIO_START} token in the sequence")
        arr = arr[starts[-1] + 1:]
        ends = np.flatnonzero(arr == self.audio_end_id)
        return arr[: ends[0]] if ends.size else arr

    def _expected(self, slot: int) -> str:
        cb = FRAME_SLOTS[slot]
        return (f"a CB{cb + 1} token <|snac{cb + 1}_*|> (ids {self.codebook_range(cb).start}.."
                f"{self.codebook_range(cb).stop - 1}) in frame slot {slot}")

    def _describe(self, token_id: int) -> str:
        if self.is_audio(token_id):
            rel = token_id - self.audio_offset
            return f" (<|snac{rel // CODEBOOK_SIZE + 1}_{rel % CODEBOOK_SIZE}|>)"
        if token_id < self.base_vocab_size:
            return " (a text token)"
        inv = {v: k for k, v in self._ids().items()}
        return f" ({inv[token_id]})" if token_id in inv else " (outside the vocabulary)"

    # --- prompts
    def speaker_block(self, voice: str | None = None, reference_codes=None) -> list[int]:
        """``<|speaker_start|> X <|speaker_end|>`` where X is a voice token, the frames of a
        reference clip, or nothing (no speaker conditioning)."""
        if voice is not None and reference_codes is not None:
            raise ValueError("give either a built-in voice or reference codes, not both")
        inner: list[int] = []
        if voice is not None:
            inner = [self.voice_id(voice)]
        elif reference_codes is not None:
            inner = self.codes_to_tokens(reference_codes).tolist()
        return [self.speaker_start_id, *inner, self.speaker_end_id]

    def build_prompt(self, text_ids: Sequence[int], *, emotion: str | None = None,
                     voice: str | None = None, reference_codes=None,
                     bos_id: int | None = None) -> list[int]:
        """Prompt in the contract's order, ending with ``<|audio_start|>``.

        ``text_ids``: the tokenizer's ids of the (normalized) text, without BOS;
        may contain non-verbal tag ids. ``emotion`` defaults to neutral.
        """
        bad = [t for t in text_ids if not (0 <= t < self.base_vocab_size) and t not in self._nonverbal_ids()]
        if bad:
            raise ValueError(f"text_ids must be base-vocabulary or non-verbal ids; found {bad[:5]}")
        ids = [] if bos_id is None else [bos_id]
        ids += [self.text_start_id, *text_ids, self.text_end_id]
        ids.append(self.emotion_id(emotion or DEFAULT_EMOTION))
        ids += self.speaker_block(voice, reference_codes)
        ids.append(self.audio_start_id)
        return ids

    def _nonverbal_ids(self) -> set[int]:
        return {self.nonverbal_id(n) for n in NONVERBALS}

    # --- tokenizers
    @classmethod
    def from_tokenizer(cls, tokenizer) -> "TokenLayout":
        """Layout of a tokenizer extended with :func:`new_tokens` (checks every id)."""
        first = tokenizer.convert_tokens_to_ids(audio_token(0, 0))
        unk = getattr(tokenizer, "unk_token_id", None)
        if first is None or first == unk:
            raise ValueError(f"tokenizer has no {audio_token(0, 0)}: extend it with helpers.tokens.new_tokens() first")
        layout = cls(first)
        toks = new_tokens()
        got = tokenizer.convert_tokens_to_ids(toks)
        want = list(range(first, first + len(toks)))
        if got != want:
            i = next(i for i, (a, b) in enumerate(zip(got, want)) if a != b)
            raise ValueError(f"tokenizer's ids break the contract at {toks[i]!r}: id {got[i]}, expected {want[i]}")
        return layout


def as_codebooks(codes) -> list[np.ndarray]:
    """Validate SNAC codes of one utterance: [cb1 (T,), cb2 (2T,), cb3 (4T,)] (a leading batch
    dim of 1 and torch tensors accepted) -> int64 numpy arrays; clear errors otherwise."""
    if len(codes) != N_CODEBOOKS:
        raise ValueError(f"expected {N_CODEBOOKS} codebooks, got {len(codes)}")
    cb = []
    for i, c in enumerate(codes):
        a = np.asarray(c.detach().cpu() if hasattr(c, "detach") else c, dtype=np.int64)
        if a.ndim == 2 and a.shape[0] == 1:
            a = a[0]
        if a.ndim != 1:
            raise ValueError(f"codebook {i + 1}: expected shape (n,) or (1, n), got {a.shape}")
        if a.size and (a.min() < 0 or a.max() >= CODEBOOK_SIZE):
            raise ValueError(f"codebook {i + 1}: codes must be in 0..{CODEBOOK_SIZE - 1}, "
                             f"got range {a.min()}..{a.max()}")
        cb.append(a)
    t = cb[0].shape[0]
    for i, per in enumerate(CODES_PER_FRAME):
        if cb[i].shape[0] != per * t:
            raise ValueError(f"codebook {i + 1} has {cb[i].shape[0]} codes; with {t} CB1 codes "
                             f"it must have {per * t} (shapes (T,), (2T,), (4T,))")
    return cb


def iter_frames(ids: Iterable[int]):
    """Yield consecutive 7-token tuples (a trailing partial frame is not yielded)."""
    buf: list[int] = []
    for t in ids:
        buf.append(int(t))
        if len(buf) == FRAME_SIZE:
            yield tuple(buf)
            buf = []
