"""From token shards to training examples in the contract's prompt format.

One example per utterance (ids from :class:`helpers.tokens.TokenLayout`; this
module never computes an id itself)::

    [bos] <|text_start|> text <|text_end|> <|emotion:E|>
          <|speaker_start|> X <|speaker_end|> <|audio_start|> frames <|audio_end|>

where X is

* the speaker's built-in voice token when the speaker was chosen as one of the
  eight built-in voices (:func:`choose_builtin_voices`);
* otherwise, with probability ``reference_prob``, the SNAC frames of a
  reference cut from *other* utterances of the same speaker (this is what
  teaches zero-shot cloning: the model must copy the voice of the reference into
  the target audio). Its length is drawn uniformly between
  ``reference_min_frames`` and ``reference_max_frames`` (3-20 s by default: the
  bounds inference accepts, :mod:`helpers.train.config`), bounded by the room the
  context leaves beside the target; consecutive clips of the speaker are joined
  at frame boundaries when one clip is shorter than the drawn length (most
  corpus clips are 2-10 s), so long references occur too;
* otherwise nothing (the model learns to produce some voice unconditioned).

The emotion token comes from the utterance's label (``neutral`` when empty).
Labels are -100 except on the target audio tokens and ``<|audio_end|>``
(``loss_on="audio"``, the default) or on every token after BOS (``"all"``).

Sequences longer than the context are never cut: a reference is shortened by
whole frames (or left out) to fit, and an example whose own text + audio do
not fit is skipped and listed in the :class:`SequenceReport`.

Randomness (reference choice and crop) comes from ``numpy.random.default_rng
([seed, epoch])`` only, so an epoch's examples are a pure function of the
data, the config and the epoch number: exact resume rebuilds them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import numpy as np

from ..tokens import (REFERENCE_MAX_FRAMES, REFERENCE_MIN_FRAMES, SNAC_FRAMES_PER_SECOND, DEFAULT_EMOTION,
    EMOTIONS, FRAME_SIZE, VOICES, TokenLayout)
from ..data.shards import Utterance
from ..data.speaker_facts import BUILTIN_VOICE_PLAN

IGNORE_INDEX = -100  # label value that carries no loss (torch cross_entropy's ignore_index)
GENDERS = ("male", "female")
ACCENTS = ("us", "uk")


# ----------------------------------------------------------------------------- voices
@dataclass
class VoiceSelection:
    """Which corpus speaker each built-in voice is trained on.

    ``assignments``: voice name -> speaker id. ``candidates``: one row per
    (voice, speaker considered) with the data behind the choice, for a table.
    ``unassigned``: voices without a suitable speaker in the corpus (they keep
    their untrained token; the report says so). ``fallbacks``: voice -> ``{"planned", "planned_minutes",
    "speaker"}`` for every voice whose planned speaker (:data:`BUILTIN_VOICE_PLAN`) was missing or had
    too little data, and the speaker it fell back to (None: unassigned). Never silent:
    :func:`fallback_message` says it and :func:`helpers.train.recipe.voices_for_stage` stops on it
    unless the run accepts it.
    """

    assignments: dict[str, str]
    candidates: list[dict] = field(default_factory=list)
    unassigned: list[str] = field(default_factory=list)
    fallbacks: dict[str, dict] = field(default_factory=dict)

    @property
    def speaker_to_voice(self) -> dict[str, str]:
        return {s: v for v, s in self.assignments.items()}

    def to_dict(self) -> dict:
        out = {"assignments": dict(self.assignments), "unassigned": list(self.unassigned)}
        if self.fallbacks:  # recorded in voices.json, hence in the export: which speaker each voice really is
            out["fallbacks"] = {v: dict(f) for v, f in self.fallbacks.items()}
        return out

    def table(self) -> list[dict]:
        """One row per voice: the corpus speaker it is trained on, the plan, and (when chosen now) its
        minutes and why; a selection read back from voices.json says which voices fell back."""
        if not self.candidates:
            return [{"voice": v, "speaker": self.assignments.get(v), "planned": BUILTIN_VOICE_PLAN.get(v),
                     "fallback": v in self.fallbacks} for v in VOICES]
        return [{"voice": c["voice"], "speaker": c["speaker"], "dataset": c["dataset"],
                 "minutes": round(c["seconds"] / 60.0, 1), "planned": BUILTIN_VOICE_PLAN.get(c["voice"]),
                 "why": c["why"]} for c in self.candidates]

    @classmethod
    def from_dict(cls, d: dict) -> "VoiceSelection":
        bad = [v for v in d.get("assignments", {}) if v not in VOICES]
        if bad:
            raise ValueError(f"voice selection names unknown voices {bad}; built-in voices: {VOICES}")
        return cls(dict(d["assignments"]), [], list(d.get("unassigned", [])), dict(d.get("fallbacks", {})))


class VoiceFallbackError(ValueError):
    """A built-in voice's planned corpus speaker is missing from the data; the message says which and to whom."""


def fallback_message(sel: VoiceSelection) -> str | None:
    """One line per voice that would not be its planned speaker (None when every plan holds)."""
    if not sel.fallbacks:
        return None
    lines = [f"{v}: planned {f['planned']} has {f['planned_minutes']:.1f} min in the data -> "
             + (f"falls back to {f['speaker']}" if f["speaker"] else "no speaker (untrained voice token)")
             for v, f in sorted(sel.fallbacks.items())]
    return "built-in voices that would not be their planned corpus speaker:\n  " + "\n  ".join(lines)


def choose_builtin_voices(utterances: Iterable[Utterance], min_utterances: int = 2,
                          overrides: dict[str, str] | None = None,
                          plan: dict[str, str] | None = None) -> VoiceSelection:
    """Pick the corpus speakers behind the eight built-in voices (seed §8: 4 US, 4 British).

    ``plan`` (voice -> speaker; default :data:`helpers.data.speaker_facts.BUILTIN_VOICE_PLAN`, the
    catalog's documented choice: Expresso for the US voices, southern-English VCTK speakers for
    the British ones, whose data every phase replays) decides a voice whenever its speaker is in
    the corpus with at least ``min_utterances`` utterances; a planned speaker whose data says
    another gender/accent than the voice's name raises ValueError.

    Otherwise the rule (documented, deterministic): voice ``{gender}_{accent}_{NN}`` goes to the
    speakers with that gender and accent ("us"/"uk" in the shards; "uk" = English English,
    Scottish/Irish/Welsh are accents of their own), ranked by total seconds of speech (more
    data = a steadier voice), ties by speaker id. Speakers with fewer than ``min_utterances``
    utterances are not eligible. ``overrides`` (voice -> speaker) replace plan and rule for
    single voices. A voice with no eligible speaker is listed in ``unassigned``. A speaker whose
    utterances disagree on gender or accent raises ValueError.
    """
    if plan is None:
        plan = BUILTIN_VOICE_PLAN
    stats: dict[str, dict] = {}
    for u in utterances:
        s = stats.setdefault(u.speaker, {"speaker": u.speaker, "gender": u.gender, "accent": u.accent,
                                         "dataset": u.dataset, "utterances": 0, "seconds": 0.0})
        if (s["gender"], s["accent"]) != (u.gender, u.accent):
            raise ValueError(f"speaker {u.speaker!r}: utterance {u.utterance_id} says gender/accent "
                             f"{u.gender}/{u.accent}, earlier ones {s['gender']}/{s['accent']}")
        s["utterances"] += 1
        s["seconds"] += float(u.duration_s)
    overrides = dict(overrides or {})
    user_overrides = set(overrides)
    for v, spk in overrides.items():
        if v not in VOICES:
            raise ValueError(f"override for unknown voice {v!r}; built-in voices: {VOICES}")
        if spk not in stats:
            raise ValueError(f"override {v} -> {spk!r}: no such speaker in the corpus")
    planned_missing: dict[str, dict] = {}
    for v, spk in plan.items():
        if v not in VOICES:
            raise ValueError(f"voice plan names unknown voice {v!r}; built-in voices: {VOICES}")
        if v in overrides or spk in overrides.values():
            continue
        if spk not in stats or stats[spk]["utterances"] < min_utterances:
            planned_missing[v] = {"planned": spk, "planned_minutes": round(stats.get(spk, {}).get("seconds", 0.0) / 60, 2)}
            continue
        gender, accent = v.split("_")[:2]
        if (stats[spk]["gender"], stats[spk]["accent"]) != (gender, accent):
            raise ValueError(f"voice plan {v} -> {spk!r}: the data says {stats[spk]['gender']}/{stats[spk]['accent']}, "
                             f"the voice needs {gender}/{accent}; fix helpers/data/speaker_facts.py or the catalog")
        overrides[v] = spk
    taken = set(overrides.values())
    assignments: dict[str, str] = {}
    candidates: list[dict] = []
    unassigned: list[str] = []
    for gender in GENDERS:
        for accent in ACCENTS:
            voices = [v for v in VOICES if v.startswith(f"{gender}_{accent}_")]
            pool = sorted((s for s in stats.values() if s["gender"] == gender and s["accent"] == accent
                           and s["utterances"] >= min_utterances and s["speaker"] not in taken),
                          key=lambda s: (-s["seconds"], s["speaker"]))
            for v in voices:
                if v in overrides:
                    assignments[v] = overrides[v]
                    why = "override" if v in user_overrides else "catalog voice plan (helpers.data.speaker_facts)"
                    candidates.append({"voice": v, **stats[overrides[v]], "why": why})
                elif pool:
                    s = pool.pop(0)
                    assignments[v] = s["speaker"]
                    candidates.append({"voice": v, **s, "why": f"most speech among {gender}/{accent}"})
                else:
                    unassigned.append(v)
                    candidates.append({"voice": v, "speaker": None, "gender": gender, "accent": accent,
                                       "dataset": None, "utterances": 0, "seconds": 0.0,
                                       "why": f"no {gender}/{accent} speaker with >= {min_utterances} utterances"})
    fallbacks = {v: {**f, "speaker": assignments.get(v)} for v, f in planned_missing.items()}
    for c in candidates:
        if c["voice"] in fallbacks:
            c["why"] = f"FALLBACK (planned {fallbacks[c['voice']]['planned']} missing): " + c["why"]
    return VoiceSelection(assignments, candidates, unassigned, fallbacks)


# ----------------------------------------------------------------------------- examples
@dataclass
class Example:
    """One training example. ``input_ids``/``labels``: int64 arrays of the same length L."""

    utterance_id: str
    input_ids: np.ndarray  # (L,) int64
    labels: np.ndarray  # (L,) int64, IGNORE_INDEX where no loss
    conditioning: str  # "voice" | "reference" | "none"

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])


@dataclass
class SequenceReport:
    """Counts of what one epoch's example building did; nothing is dropped uncounted."""

    utterances: int = 0
    examples: int = 0
    with_voice: int = 0
    with_reference: int = 0
    without_speaker: int = 0
    references_cropped: int = 0  # window shorter than the clip(s) it was cut from (whole frames)
    references_joined: int = 0  # references made of two or more clips of the speaker
    references_left_out_for_length: int = 0  # the context leaves no room for even reference_min_frames
    no_reference_candidate: int = 0  # the speaker's other clips hold fewer than reference_min_frames
    reference_frames: list[int] = field(default_factory=list)  # length of every reference, in frames
    too_long: list[str] = field(default_factory=list)  # utterance ids skipped: text + audio exceed the context
    tokens: int = 0
    loss_tokens: int = 0

    def rows(self) -> list[dict]:
        """(what, count) rows for a table."""
        return [{"what": k, "count": (len(v) if isinstance(v, list) else v)} for k, v in self.__dict__.items()]

    def reference_histogram(self, edges_s: Sequence[float] | None = None) -> list[dict]:
        """References per length bin: rows {"from_s", "to_s", "references"} (frames at 11.72 Hz)."""
        return reference_histogram([f / SNAC_FRAMES_PER_SECOND for f in self.reference_frames],
                                   REFERENCE_BINS_S if edges_s is None else edges_s)


TextEncoder = Callable[[str], Sequence[int]]


def text_encoder(tokenizer) -> TextEncoder:
    """A function text -> base-vocabulary ids (no BOS/EOS) from a HF tokenizer."""
    def enc(text: str) -> list[int]:
        return list(tokenizer.encode(text, add_special_tokens=False))
    return enc


class SequenceBuilder:
    """Builds :class:`Example` s for one epoch.

    ``encode_text``: text -> ids (see :func:`text_encoder`); ``bos_id``: the
    tokenizer's BOS id or None; ``voices``: a :class:`VoiceSelection`; the rest
    mirror the fields of :class:`helpers.train.config.StageConfig`.
    """

    def __init__(self, layout: TokenLayout, encode_text: TextEncoder, bos_id: int | None,
                 voices: VoiceSelection, max_seq_len: int, reference_prob: float = 0.5,
                 reference_max_frames: int = REFERENCE_MAX_FRAMES, reference_min_frames: int = REFERENCE_MIN_FRAMES,
                 loss_on: str = "audio"):
        if loss_on not in ("audio", "all"):
            raise ValueError(f"loss_on must be 'audio' or 'all', got {loss_on!r}")
        if not 0 <= reference_prob <= 1:
            raise ValueError(f"reference_prob must be in [0, 1], got {reference_prob}")
        if not 1 <= reference_min_frames <= reference_max_frames:
            raise ValueError(f"need 1 <= reference_min_frames ({reference_min_frames}) <= "
                             f"reference_max_frames ({reference_max_frames})")
        self.layout, self.encode_text, self.bos_id = layout, encode_text, bos_id
        self.voice_of = voices.speaker_to_voice
        self.max_seq_len, self.reference_prob = max_seq_len, reference_prob
        self.reference_max_frames, self.reference_min_frames = reference_max_frames, reference_min_frames
        self.loss_on = loss_on
        self._text_cache: dict[str, list[int]] = {}

    @classmethod
    def from_config(cls, layout: TokenLayout, tokenizer, voices: VoiceSelection, cfg) -> "SequenceBuilder":
        """From a tokenizer and a :class:`helpers.train.config.StageConfig`."""
        return cls(layout, text_encoder(tokenizer), getattr(tokenizer, "bos_token_id", None), voices,
                   cfg.max_seq_len, cfg.reference_prob, cfg.reference_max_frames, cfg.reference_min_frames,
                   cfg.loss_on)

    def _text_ids(self, u: Utterance) -> list[int]:
        ids = self._text_cache.get(u.utterance_id)
        if ids is None:
            if not u.text or not u.text.strip():
                raise ValueError(f"utterance {u.utterance_id}: empty transcript")
            ids = self._text_cache[u.utterance_id] = list(self.encode_text(u.text))
        return ids

    @staticmethod
    def _emotion(u: Utterance) -> str:
        e = (u.emotion or "").strip() or DEFAULT_EMOTION
        if e not in EMOTIONS:
            raise ValueError(f"utterance {u.utterance_id}: emotion label {u.emotion!r} is not a contract "
                             f"emotion ({', '.join(EMOTIONS)}); map it in the dataset catalog")
        return e

    def prompt(self, u: Utterance, voice: str | None = None, reference_codes=None) -> list[int]:
        """The inference prompt of ``u`` (ends with ``<|audio_start|>``); ``voice`` defaults to the
        speaker's built-in voice when it has one."""
        voice = voice if voice is not None or reference_codes is not None else self.voice_of.get(u.speaker)
        return self.layout.build_prompt(self._text_ids(u), emotion=self._emotion(u), voice=voice,
                                        reference_codes=reference_codes, bos_id=self.bos_id)

    def example(self, u: Utterance, voice: str | None = None, reference_codes=None) -> Example:
        """The example of ``u`` with the given conditioning (no randomness, no length check)."""
        lay = self.layout
        prompt = self.prompt(u, voice=voice, reference_codes=reference_codes) if (
            voice is not None or reference_codes is not None) else lay.build_prompt(
            self._text_ids(u), emotion=self._emotion(u), bos_id=self.bos_id)
        audio = lay.codes_to_tokens(u.codes)
        ids = np.concatenate([np.asarray(prompt, dtype=np.int64), audio, [lay.audio_end_id]]).astype(np.int64)
        labels = ids.copy()
        if self.loss_on == "audio":
            labels[: len(prompt)] = IGNORE_INDEX
        elif self.bos_id is not None:
            labels[0] = IGNORE_INDEX
        kind = "voice" if voice else ("reference" if reference_codes is not None else "none")
        return Example(u.utterance_id, ids, labels, kind)

    def build(self, utterances: Sequence[Utterance], seed: int, epoch: int,
              pool: Sequence[Utterance] | None = None) -> tuple[list[Example], SequenceReport]:
        """Examples of ``utterances`` for ``epoch`` (order kept), with a report.

        ``pool``: utterances references may be cut from (default: ``utterances``; training passes
        its training utterances so that no reference comes from a held-out one); a reference
        never contains the target utterance itself.
        """
        rng = np.random.default_rng([int(seed), int(epoch)])
        pool = utterances if pool is None else pool
        by_speaker: dict[str, list[Utterance]] = {}
        for p in pool:
            by_speaker.setdefault(p.speaker, []).append(p)
        rep = SequenceReport(utterances=len(utterances))
        out: list[Example] = []
        for u in utterances:
            voice = self.voice_of.get(u.speaker)
            base_len = len(self.example(u, voice=voice))
            if base_len > self.max_seq_len:
                rep.too_long.append(u.utterance_id)
                continue
            ref = None
            if voice is None and self.reference_prob > 0 and rng.random() < self.reference_prob:
                others = [p for p in by_speaker.get(u.speaker, []) if p.utterance_id != u.utterance_id]
                # Room left in the context for reference frames (whole frames only).
                room = (self.max_seq_len - base_len) // FRAME_SIZE
                drawn = draw_reference(rng, others, room, self.reference_min_frames, self.reference_max_frames)
                if isinstance(drawn, str):
                    if drawn == "no_room":
                        rep.references_left_out_for_length += 1
                    else:
                        rep.no_reference_candidate += 1
                else:
                    ref, n_clips, cropped = drawn
                    rep.references_joined += n_clips > 1
                    rep.references_cropped += cropped
                    rep.reference_frames.append(int(ref[0].shape[0]))
            ex = self.example(u, voice=voice, reference_codes=ref)
            if len(ex) > self.max_seq_len:  # cannot happen by construction; fail loudly if it does
                raise AssertionError(f"{u.utterance_id}: built {len(ex)} tokens > max_seq_len {self.max_seq_len}")
            out.append(ex)
            rep.examples += 1
            rep.with_voice += ex.conditioning == "voice"
            rep.with_reference += ex.conditioning == "reference"
            rep.without_speaker += ex.conditioning == "none"
            rep.tokens += len(ex)
            rep.loss_tokens += int((ex.labels != IGNORE_INDEX).sum())
        return out, rep


REFERENCE_BINS_S: tuple[float, ...] = (0, 3, 5, 10, 15, 20, 30)  # seconds; the seed's quality-vs-length steps


def reference_histogram(seconds: Sequence[float], edges_s: Sequence[float] = REFERENCE_BINS_S) -> list[dict]:
    """Counts of ``seconds`` per bin [edge_i, edge_i+1) (the last bin includes its right edge)."""
    edges = [float(e) for e in edges_s]
    if len(edges) < 2 or any(b <= a for a, b in zip(edges, edges[1:])):
        raise ValueError(f"histogram edges must be increasing, got {edges_s!r}")
    counts = [0] * (len(edges) - 1)
    outside = 0
    for x in seconds:
        k = int(np.searchsorted(edges, x, side="right")) - 1
        if k == len(counts) and x == edges[-1]:
            k -= 1
        if 0 <= k < len(counts):
            counts[k] += 1
        else:
            outside += 1
    if outside:
        raise ValueError(f"{outside} reference length(s) outside the histogram range {edges[0]}-{edges[-1]} s")
    return [{"from_s": a, "to_s": b, "references": c} for a, b, c in zip(edges, edges[1:], counts)]


def draw_reference(rng: np.random.Generator, others: Sequence[Utterance], room: int, min_frames: int,
                   max_frames: int):
    """A cloning reference from ``others`` (the speaker's clips other than the target).

    Length: uniform in ``[min_frames, min(max_frames, room, frames available)]``. Clips are
    taken in pool order from a random start (wrapping around) and joined at frame boundaries
    until they hold that many frames; a random window of exactly that length is cut from them.
    Returns ``(codes [cb1 (n,), cb2 (2n,), cb3 (4n,)], clips used, cropped)`` or why there is
    none: ``"no_room"`` (the context leaves fewer than ``min_frames``) or ``"no_candidate"``
    (the speaker's other clips hold fewer than ``min_frames`` frames).
    """
    total = sum(o.n_frames for o in others)
    if total < min_frames:
        return "no_candidate"
    hi = min(max_frames, room, total)
    if hi < min_frames:
        return "no_room"
    n = int(rng.integers(min_frames, hi + 1))
    k0 = int(rng.integers(len(others)))
    parts, have = [], 0
    for j in range(len(others)):
        o = others[(k0 + j) % len(others)]
        if o.n_frames == 0:
            continue
        parts.append(o.codes)
        have += o.n_frames
        if have >= n:
            break
    joined = [np.concatenate([p[c] for p in parts]) for c in range(3)]
    start = int(rng.integers(have - n + 1))
    return crop_codes(joined, start, n), len(parts), n < have


def crop_codes(codes: Sequence[np.ndarray], start: int, n_frames: int) -> list[np.ndarray]:

    """Frames ``start .. start+n_frames`` of SNAC codes [cb1 (T,), cb2 (2T,), cb3 (4T,)]."""
    t = int(np.asarray(codes[0]).shape[0])
    if not (0 <= start and n_frames >= 0 and start + n_frames <= t):
        raise ValueError(f"cannot crop frames {start}..{start + n_frames} from {t} frames")
    return [np.asarray(c)[start * k:(start + n_frames) * k] for c, k in zip(codes, (1, 2, 4))]


def split_eval(utterances: Sequence[Utterance], fraction: float, seed: int, max_eval: int = 64
               ) -> tuple[list[Utterance], list[Utterance]]:
    """(train, eval) split by a seeded permutation: ``fraction`` of the utterances (at least one
    when ``fraction`` > 0 and there are two or more, at most ``max_eval``) are held out."""
    if not utterances:
        raise ValueError("no utterances to split")
    n_eval = 0
    if fraction > 0 and len(utterances) > 1:
        n_eval = min(max_eval, max(1, int(round(fraction * len(utterances)))), len(utterances) - 1)
    order = np.random.default_rng([int(seed), 7919]).permutation(len(utterances))
    held = set(order[:n_eval].tolist())
    train = [u for i, u in enumerate(utterances) if i not in held]
    ev = [utterances[i] for i in sorted(held)]
    return train, ev
