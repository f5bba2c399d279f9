"""The ipywidgets demo of notebook 08, and the sample clips written next to the export.

:func:`build_demo` returns a :class:`DemoApp`: two tabs built from ipywidgets 7.7.1
(Colab's version; 8.x works too) around an engine with ``OptimumTTS``'s interface
(``generate``, ``generate_dialogue``, ``clone_voice``, ``sample_rate``):

* **Speak** — text box, voice dropdown (the eight built-ins, "clone the reference
  clip below", and the voice profiles saved in ``voices_dir``), emotion dropdown,
  reference clip by upload *or* by path (Colab refuses uploads over ~1 MB; put long
  clips on Drive and paste the path), "save as profile", sampling sliders, seed,
  Generate, a status line and an audio player.
* **Dialogue** — a script (``speaker1: text`` per line), a voice for each speaker,
  the pause between turns, Generate, status, player.

Every handler shows its outcome in the widget: audio and a one-line summary, or a
red message naming what was wrong (empty text, unknown speaker in the script,
silent or too-short reference clip...) — never a traceback. The app is plain
Python objects, so tests build it headless, set values, call ``button.click()`` and
read ``app.player.value`` / ``app.status.value``.
"""
from __future__ import annotations

import html
import io
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..profiles import Profile
from ..tokens import DEFAULT_EMOTION, EMOTIONS, VOICES

CLONE = "__clone__"  # voice dropdown value: use the reference clip of the Speak tab
PROFILE_SUFFIX = ".json"
DIALOGUE_SPEAKERS = ("speaker1", "speaker2")
DIALOGUE_DEFAULT_VOICES = ("male_us_01", "female_uk_01")  # a US and a British voice: easy to tell apart
DEFAULT_SCRIPT = "speaker1: Welcome to the show!\nspeaker2: Thanks for having me."
DEFAULT_TEXT = "Welcome to OptimumAI. How can I help you today?"
VOICES_DIRNAME = "voices"  # saved voice profiles inside the run directory (never exported)




def load_engine(model_dir: str | os.PathLike, profile: Profile, max_seconds: float | None = None):
    """``OptimumTTS.from_pretrained(model_dir)`` with the length guard capped at ``max_seconds``
    of audio per chunk (None: the profile's ``demo_max_seconds``, which is None — the engine's default — on colab)."""
    from ..infer.generation import LengthGuard
    from ..infer.engine import OptimumTTS

    if max_seconds is None:
        max_seconds = profile.demo_max_seconds
    if max_seconds is None:
        return OptimumTTS.from_pretrained(model_dir)
    if not max_seconds > 0:
        raise ValueError(f"max_seconds must be > 0, got {max_seconds}")
    guard = LengthGuard(base_seconds=min(LengthGuard().base_seconds, max_seconds), cap_seconds=float(max_seconds))
    return OptimumTTS.from_pretrained(model_dir, length_guard=guard)


def voices_dir(paths) -> Path:
    """Where the demo saves voice profiles: ``<run dir>/voices`` (kept out of the export:
    a cloned voice belongs to its speaker, not to the published model)."""
    return Path(paths.root) / VOICES_DIRNAME


# ----------------------------------------------------------------------------- inputs
def uploaded_files(value) -> list[tuple[str, bytes]]:
    """``[(filename, content bytes)]`` from a ``FileUpload.value`` of ipywidgets 7 or 8.

    7.x: ``{filename: {"metadata": {...}, "content": bytes}}``; 8.x: a tuple of dicts
    with ``name`` and ``content`` (a memoryview). Anything else raises ``TypeError``.
    """
    if not value:
        return []
    if isinstance(value, dict):  # ipywidgets 7
        return [(str(name), bytes(item["content"])) for name, item in value.items()]
    if isinstance(value, (tuple, list)):  # ipywidgets 8
        return [(str(item["name"]), bytes(item["content"])) for item in value]
    raise TypeError(f"unexpected FileUpload value of type {type(value).__name__}")


def parse_script(text: str, speakers: Sequence[str] = DIALOGUE_SPEAKERS) -> list[tuple[str, str]]:
    """``"speaker1: Hi!\\nspeaker2: Hello."`` -> ``[("speaker1", "Hi!"), ("speaker2", "Hello.")]``.

    Blank lines are skipped. A line without ``name:``, an unknown speaker name or an
    empty turn raises ``ValueError`` naming the line number.
    """
    turns = []
    for n, line in enumerate(str(text).splitlines(), 1):
        if not line.strip():
            continue
        m = re.match(r"^\s*([A-Za-z0-9_]+)\s*:\s*(.*)$", line)
        if not m:
            raise ValueError(f"script line {n} must look like 'speaker1: text', got {line.strip()!r}")
        who, said = m.group(1), m.group(2).strip()
        if who not in speakers:
            raise ValueError(f"script line {n}: unknown speaker {who!r}; use {' or '.join(speakers)}")
        if not said:
            raise ValueError(f"script line {n}: {who} says nothing")
        turns.append((who, said))
    if not turns:
        raise ValueError(f"the script is empty: write one turn per line, e.g. '{speakers[0]}: Hello!'")
    return turns


def wav_bytes(wav: np.ndarray, sample_rate: int) -> bytes:
    """16-bit PCM WAV file bytes of a float waveform (what the audio player plays)."""
    import soundfile as sf

    a = np.clip(np.asarray(wav, dtype=np.float32).reshape(-1), -1.0, 1.0)
    buf = io.BytesIO()
    sf.write(buf, a, int(sample_rate), format="WAV", subtype="PCM_16")
    return buf.getvalue()


def _ok(msg: str) -> str:
    return f"<span style='color:#1a7f37'>{html.escape(msg)}</span>"


def _err(msg: str) -> str:
    return f"<span style='color:#cf222e'><b>Could not generate:</b> {html.escape(msg)}</span>"


def _describe_error(e: BaseException) -> str:
    # Users see the message of the errors they can fix (bad text, voice, clip); an
    # unexpected error type is named so it can be reported, still without a traceback.
    expected = (ValueError, TypeError, FileNotFoundError, KeyError)
    text = str(e).strip("'\"") or type(e).__name__
    return text if isinstance(e, expected) else f"{type(e).__name__}: {text}"


# ----------------------------------------------------------------------------- the app
@dataclass
class DemoApp:
    """The demo's widgets (attributes) and its last result. ``widget`` is what to display."""

    engine: object
    voices_dir: Path | None
    widget: object = None
    # Speak tab
    text: object = None
    voice: object = None
    emotion: object = None
    upload: object = None
    reference_path: object = None
    profile_name: object = None
    save_profile: object = None
    temperature: object = None
    top_p: object = None
    top_k: object = None
    repetition_penalty: object = None
    seed: object = None
    generate: object = None
    status: object = None
    player: object = None
    # Dialogue tab
    script: object = None
    speaker_voices: dict = field(default_factory=dict)
    pause: object = None
    generate_dialogue: object = None
    dialogue_status: object = None
    dialogue_player: object = None
    last_audio: np.ndarray | None = None
    last_dialogue: object = None

    # ------------------------------------------------------------------ voices
    def voice_options(self, with_clone: bool = True) -> list[tuple[str, str]]:
        """(label, value) pairs: built-ins, the reference clip, saved profiles (value = path)."""
        opts = [(v, v) for v in VOICES]
        if with_clone:
            opts.append(("clone: the reference clip below", CLONE))
        if self.voices_dir is not None and Path(self.voices_dir).is_dir():
            for p in sorted(Path(self.voices_dir).glob(f"*{PROFILE_SUFFIX}")):
                opts.append((f"saved: {p.stem}", str(p)))
        return opts

    def refresh_voices(self) -> None:
        """Re-read the saved profiles into the dropdowns (keeps the current choices)."""
        for dd, clone in [(self.voice, True)] + [(d, False) for d in self.speaker_voices.values()]:
            cur = dd.value
            dd.options = self.voice_options(with_clone=clone)
            if cur in [v for _, v in dd.options]:
                dd.value = cur

    def reference(self):
        """The reference clip: uploaded bytes (the newest upload) or the path in the box.
        Raises ``ValueError`` when neither is given or the path does not exist."""
        files = uploaded_files(self.upload.value)
        path = self.reference_path.value.strip()
        if path:
            p = Path(path).expanduser()
            if not p.is_file():
                raise FileNotFoundError(f"reference clip not found: {path}")
            return str(p)
        if files:
            return files[-1][1]
        raise ValueError("voice 'clone' needs a reference clip: upload one (under 1 MB in Colab) or paste "
                         "the path of an audio file, e.g. on Drive")

    # ------------------------------------------------------------------ handlers
    def _sampling(self) -> dict:
        return dict(temperature=float(self.temperature.value), top_p=float(self.top_p.value),
                    top_k=int(self.top_k.value), repetition_penalty=float(self.repetition_penalty.value),
                    seed=int(self.seed.value))

    def on_generate(self, _button=None) -> None:
        """Generate button: validate, synthesise, put the audio in the player or show why not."""
        self.status.value = "generating…"
        try:
            text = self.text.value.strip()
            if not text:
                raise ValueError("the text is empty: type what the voice should say")
            voice = self.voice.value
            kw = dict(emotion=self.emotion.value, **self._sampling())
            if voice == CLONE:
                kw["audio_prompt"] = self.reference()
            elif voice in VOICES or str(voice).endswith(PROFILE_SUFFIX):
                kw["speaker"] = voice
            else:
                raise ValueError(f"unknown voice {voice!r}; choose a built-in voice ({', '.join(VOICES)}), "
                                 f"the reference clip or a saved profile")
            wav, notes = _call_noting_warnings(self.engine.generate, text, **kw)
            wav = np.asarray(wav, dtype=np.float32).reshape(-1)
            if wav.size == 0:
                raise ValueError("the model produced no audio for this input")
            self.last_audio = wav
            self.player.value = wav_bytes(wav, self.engine.sample_rate)
            self.status.value = _ok(f"{wav.size / self.engine.sample_rate:.2f} s of audio, voice "
                                    f"{Path(str(voice)).stem if voice != CLONE else 'cloned'}, emotion "
                                    f"{self.emotion.value}" + notes)
        except Exception as e:  # shown in the widget, never as a traceback (issue 9)
            self.status.value = _err(_describe_error(e))

    def on_save_profile(self, _button=None) -> None:
        """Save the reference clip as a reusable voice profile in ``voices_dir``."""
        try:
            if self.voices_dir is None:
                raise ValueError("this demo was built without voices_dir: profiles cannot be saved")
            name = self.profile_name.value.strip()
            if not re.fullmatch(r"[A-Za-z0-9_\-]{1,64}", name):
                raise ValueError(f"profile name must be 1-64 letters, digits, '-' or '_', got {name!r}")
            profile, notes = _call_noting_warnings(self.engine.clone_voice, self.reference(), name=name)
            out = profile.save(Path(self.voices_dir) / f"{name}{PROFILE_SUFFIX}")
            self.refresh_voices()
            self.voice.value = str(out)
            self.status.value = _ok(f"saved voice profile {name!r} ({profile.seconds:.1f} s of reference); "
                                    f"it is now in the voice lists" + notes)
        except Exception as e:  # shown in the widget, never as a traceback
            self.status.value = _err(_describe_error(e))

    def on_generate_dialogue(self, _button=None) -> None:
        """Dialogue tab's Generate: parse the script, render both speakers, play the mix."""
        self.dialogue_status.value = "generating…"
        try:
            script = parse_script(self.script.value)
            voices = {s: self.speaker_voices[s].value for s in DIALOGUE_SPEAKERS}
            res, notes = _call_noting_warnings(self.engine.generate_dialogue, script,
                                               pause_s=float(self.pause.value), **self._sampling(), **voices)
            wav = np.asarray(getattr(res, "audio", res), dtype=np.float32).reshape(-1)
            if wav.size == 0:
                raise ValueError("the model produced no audio for this script")
            self.last_dialogue = res
            self.dialogue_player.value = wav_bytes(wav, self.engine.sample_rate)
            self.dialogue_status.value = _ok(f"{len(script)} turns, {wav.size / self.engine.sample_rate:.2f} s"
                                             + notes)
        except Exception as e:  # shown in the widget, never as a traceback
            self.dialogue_status.value = _err(_describe_error(e))


def _call_noting_warnings(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` with its warnings caught; returns (result, " — note: …" or "").

    The demo shows generation warnings (length guard, short reference …) in its status line
    instead of letting them vanish into the notebook's stderr."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fn(*args, **kwargs)
    notes = "; ".join(str(w.message) for w in caught)
    return result, (f" — note: {notes}" if notes else "")


def build_demo(engine, *, voices_dir: str | os.PathLike | None = None, text: str = DEFAULT_TEXT,
               script: str = DEFAULT_SCRIPT) -> DemoApp:
    """The demo app around ``engine`` (an ``OptimumTTS`` or anything with its methods).

    ``voices_dir``: folder of saved voice profiles (``*.json``), listed in the voice
    dropdowns; "save as profile" writes there (created when needed). Display
    ``app.widget`` in a notebook. Sampling sliders start at
    :class:`helpers.infer.generation.SamplingConfig`'s defaults.
    """
    import ipywidgets as w

    from ..infer.generation import SamplingConfig

    for name in ("generate", "generate_dialogue", "sample_rate"):
        if not hasattr(engine, name):
            raise TypeError(f"engine must provide {name} (like helpers.infer.engine.OptimumTTS); "
                            f"{type(engine).__name__} does not")
    vdir = Path(voices_dir) if voices_dir is not None else None
    if vdir is not None:
        vdir.mkdir(parents=True, exist_ok=True)
    app = DemoApp(engine=engine, voices_dir=vdir)
    s = SamplingConfig()
    wide = w.Layout(width="95%")
    app.text = w.Textarea(value=text, description="Text", placeholder="What should the voice say?",
                          layout=w.Layout(width="95%", height="80px"))
    app.voice = w.Dropdown(options=app.voice_options(), value=VOICES[0], description="Voice")
    app.emotion = w.Dropdown(options=list(EMOTIONS), value=DEFAULT_EMOTION, description="Emotion")
    app.upload = w.FileUpload(accept="audio/*,.wav,.flac,.ogg,.mp3", multiple=False,
                              description="Reference clip")
    app.reference_path = w.Text(description="…or path", placeholder="/content/drive/MyDrive/me.wav (for files > 1 MB)",
                                layout=wide)
    app.profile_name = w.Text(description="Profile name", placeholder="my_voice")
    app.save_profile = w.Button(description="Save as profile", icon="save")
    app.temperature = w.FloatSlider(value=s.temperature, min=0.0, max=1.5, step=0.05, description="temperature")
    app.top_p = w.FloatSlider(value=s.top_p, min=0.05, max=1.0, step=0.05, description="top-p")
    app.top_k = w.IntSlider(value=s.top_k, min=0, max=500, step=5, description="top-k")
    app.repetition_penalty = w.FloatSlider(value=s.repetition_penalty, min=1.0, max=2.0, step=0.05,
                                           description="rep. penalty")
    app.seed = w.IntText(value=0, description="seed")
    app.generate = w.Button(description="Generate", button_style="primary", icon="play")
    app.status = w.HTML(value="")
    app.player = w.Audio(format="wav", autoplay=False, loop=False)
    consent = w.HTML("<small>Clone only voices you have the speaker's explicit permission to use.</small>")
    sampling = w.Accordion(children=[w.VBox([app.temperature, app.top_p, app.top_k, app.repetition_penalty,
                                             app.seed])])
    sampling.set_title(0, "Sampling")
    cloning = w.Accordion(children=[w.VBox([consent, app.upload, app.reference_path,
                                            w.HBox([app.profile_name, app.save_profile])])])
    cloning.set_title(0, "Voice cloning (reference clip, 10–30 s of clean speech)")
    speak = w.VBox([app.text, w.HBox([app.voice, app.emotion]), cloning, sampling, app.generate, app.status,
                    app.player])

    app.script = w.Textarea(value=script, description="Script", layout=w.Layout(width="95%", height="120px"))
    app.speaker_voices = {name: w.Dropdown(options=app.voice_options(with_clone=False), value=v, description=name)
                          for name, v in zip(DIALOGUE_SPEAKERS, DIALOGUE_DEFAULT_VOICES)}
    app.pause = w.FloatSlider(value=0.4, min=0.0, max=2.0, step=0.1, description="pause (s)")
    app.generate_dialogue = w.Button(description="Generate dialogue", button_style="primary", icon="play")
    app.dialogue_status = w.HTML(value="")
    app.dialogue_player = w.Audio(format="wav", autoplay=False, loop=False)
    dialogue = w.VBox([app.script, w.HBox(list(app.speaker_voices.values())), app.pause, app.generate_dialogue,
                       app.dialogue_status, app.dialogue_player])

    app.generate.on_click(app.on_generate)
    app.save_profile.on_click(app.on_save_profile)
    app.generate_dialogue.on_click(app.on_generate_dialogue)
    tabs = w.Tab(children=[speak, dialogue])
    tabs.set_title(0, "Speak")
    tabs.set_title(1, "Dialogue")
    app.widget = tabs
    return app


# ----------------------------------------------------------------------------- sample clips
def render_samples(engine, out_dir: str | os.PathLike, items: Sequence[tuple[str, str]], text: str,
                   seed: int = 0):
    """Generate ``text`` for each ``(voice, emotion)`` in ``items`` and save ``<voice>-<emotion>.wav``
    (16-bit, engine's sample rate) into ``out_dir``. Returns a DataFrame: voice, emotion,
    seconds, file, notes (warnings of the generation, e.g. the length guard stopping an
    untrained model). Used by 08 to put listenable samples next to the export."""
    import pandas as pd

    if not items:
        raise ValueError("items is empty: give (voice, emotion) pairs, e.g. [('male_us_01', 'neutral')]")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for voice, emotion in items:
        if voice not in VOICES:
            raise ValueError(f"sample voice {voice!r} is not a built-in voice ({', '.join(VOICES)})")
        if emotion not in EMOTIONS:
            raise ValueError(f"sample emotion {emotion!r} is not one of {', '.join(EMOTIONS)}")
        with warnings.catch_warnings(record=True) as caught:  # reported in the table, not lost
            warnings.simplefilter("always")
            wav = np.asarray(engine.generate(text, speaker=voice, emotion=emotion, seed=seed), dtype=np.float32)
        path = out / f"{voice}-{emotion}.wav"
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(wav_bytes(wav, engine.sample_rate))
        os.replace(tmp, path)
        rows.append({"voice": voice, "emotion": emotion, "seconds": round(wav.size / engine.sample_rate, 2),
                     "file": str(path), "notes": "; ".join(sorted({str(w.message) for w in caught}))})
    return pd.DataFrame(rows)


__all__ = ["CLONE", "DIALOGUE_SPEAKERS", "DemoApp", "build_demo", "parse_script", "uploaded_files", "wav_bytes",
           "render_samples", "voices_dir", "load_engine"]
