"""helpers.publish.demo: the ipywidgets demo driven headless (values set, buttons clicked in code)
around a real OptimumTTS (tiny LLaMA + random-weight SNAC), and its input parsing."""
import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from helpers.publish import demo
from helpers.profiles import ASSETS_CORPUS_DIR
from helpers.tokens import VOICES

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tts(snac_random):
    from helpers.infer.generation import LengthGuard
    from helpers.infer.engine import OptimumTTS
    from helpers.models import extend_vocabulary
    from helpers.tiny_models import build_tiny_base

    model, tok = build_tiny_base()
    model, tok, _, _ = extend_vocabulary(model, tok)
    # The untrained model never emits <|audio_end|>: a short length guard keeps each call ~0.5 s of audio.
    return OptimumTTS(model, tok, snac_random, length_guard=LengthGuard(0.3, 100.0, 0.5))


@pytest.fixture
def app(tts, tmp_path):
    return demo.build_demo(tts, voices_dir=tmp_path / "voices")


def _wav(seconds: float, silent: bool = False, sr: int = 24000) -> bytes:
    t = np.arange(int(seconds * sr)) / sr
    x = np.zeros_like(t) if silent else 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))
    buf = io.BytesIO()
    sf.write(buf, x.astype(np.float32), sr, format="WAV")
    return buf.getvalue()


def _upload_v7(widget, name: str, content: bytes):
    """What the browser does in ipywidgets 7.7.1: metadata + data, then bump the counter."""
    widget.metadata = [{"name": name, "type": "audio/wav", "size": len(content), "lastModified": 0}]
    widget.data = [content]
    widget._counter += 1


def _assert_error_shown(status: str, needle: str):
    assert "Could not generate" in status and needle in status and "Traceback" not in status, status


def _clip() -> Path:
    clips = sorted(ASSETS_CORPUS_DIR.glob("*/*.flac")) + sorted(ASSETS_CORPUS_DIR.glob("*/*.wav"))
    assert clips, f"no speech clips in {ASSETS_CORPUS_DIR}"
    return clips[0]


def test_widget_has_the_controls_and_defaults(app):
    assert [v for _, v in app.voice.options][:8] == list(VOICES) and demo.CLONE in [v for _, v in app.voice.options]
    assert app.emotion.value == "neutral" and app.temperature.value == pytest.approx(0.6)
    assert app.widget.get_title(0) == "Speak" and app.widget.get_title(1) == "Dialogue"
    assert app.player.value == b""


def test_generate_with_a_builtin_voice_puts_audio_in_the_player(app):
    app.text.value = "Hello there."
    app.voice.value = "female_uk_01"
    app.emotion.value = "happy"
    app.top_k.value = 20
    app.generate.click()
    assert app.player.value[:4] == b"RIFF", app.status.value
    wav, sr = sf.read(io.BytesIO(app.player.value))
    assert sr == 24000 and wav.size == app.last_audio.size > 0
    assert "s of audio" in app.status.value and "female_uk_01" in app.status.value


def test_bad_inputs_show_a_message_not_a_traceback(app, tmp_path):
    app.text.value = "   "
    app.generate.click()
    _assert_error_shown(app.status.value, "text is empty")
    assert app.player.value == b""
    app.text.value = "Hello."
    app.voice.value = demo.CLONE  # clone, but no clip given
    app.generate.click()
    _assert_error_shown(app.status.value, "needs a reference clip")
    app.reference_path.value = str(tmp_path / "nowhere.wav")
    app.generate.click()
    _assert_error_shown(app.status.value, "not found")
    app.reference_path.value = ""
    _upload_v7(app.upload, "silence.wav", _wav(3.0, silent=True))
    app.generate.click()
    _assert_error_shown(app.status.value, "silent")
    assert app.player.value == b""


def test_unknown_voice_from_a_vanished_profile_is_reported(app, tts):
    profile = tts.clone_voice(str(_clip()), name="temp")
    path = profile.save(app.voices_dir / "temp.json")
    app.refresh_voices()
    app.voice.value = str(path)
    path.unlink()  # deleted on Drive after the dropdown listed it
    app.text.value = "Hello."
    app.generate.click()
    _assert_error_shown(app.status.value, "temp.json")


def test_clone_from_upload_save_profile_and_reuse_it(app):
    _upload_v7(app.upload, "me.flac", _clip().read_bytes())
    app.voice.value = demo.CLONE
    app.text.value = "This is my cloned voice."
    app.generate.click()
    assert app.player.value[:4] == b"RIFF", app.status.value
    app.profile_name.value = "my_voice"
    app.save_profile.click()
    saved = app.voices_dir / "my_voice.json"
    assert saved.is_file(), app.status.value
    assert ("saved: my_voice", str(saved)) in app.voice.options
    assert ("saved: my_voice", str(saved)) in app.speaker_voices["speaker2"].options
    assert app.voice.value == str(saved)
    app.player.value = b""
    app.generate.click()
    assert app.player.value[:4] == b"RIFF", app.status.value
    app.profile_name.value = "../escape"
    app.save_profile.click()
    _assert_error_shown(app.status.value, "profile name")


def test_dialogue_tab_renders_and_rejects_unknown_speakers(app):
    app.script.value = "speaker1: Welcome to the show!\n\nspeaker2: Thanks for having me."
    app.generate_dialogue.click()
    assert app.dialogue_player.value[:4] == b"RIFF", app.dialogue_status.value
    assert "2 turns" in app.dialogue_status.value and len(app.last_dialogue.turns) == 2
    app.script.value = "speaker1: Hi.\nnarrator: And then..."
    app.generate_dialogue.click()
    _assert_error_shown(app.dialogue_status.value, "line 2: unknown speaker")


def test_uploaded_files_reads_ipywidgets_7_and_8_values():
    v7 = {"a.wav": {"metadata": {"name": "a.wav", "size": 3}, "content": b"abc"}}
    v8 = ({"name": "a.wav", "type": "audio/wav", "size": 3, "content": memoryview(b"abc"), "last_modified": 0},)
    assert demo.uploaded_files(v7) == demo.uploaded_files(v8) == [("a.wav", b"abc")]
    assert demo.uploaded_files({}) == demo.uploaded_files(()) == []
    with pytest.raises(TypeError):
        demo.uploaded_files("a.wav")


def test_parse_script_rules():
    assert demo.parse_script("speaker1: Hi!\nspeaker2:Hello.") == [("speaker1", "Hi!"), ("speaker2", "Hello.")]
    for bad, msg in (("", "empty"), ("just text", "line 1 must look like"), ("speaker1:   ", "says nothing")):
        with pytest.raises(ValueError, match=msg):
            demo.parse_script(bad)


def test_render_samples_writes_wavs_and_a_table(tts, tmp_path):
    table = demo.render_samples(tts, tmp_path / "samples", [("male_us_01", "neutral")], "Hello.")
    path = Path(table.loc[0, "file"])
    assert path.name == "male_us_01-neutral.wav" and sf.info(str(path)).samplerate == 24000
    assert "length guard" in table.loc[0, "notes"]  # the untrained model's warning is reported, not dropped
    with pytest.raises(ValueError, match="not a built-in voice"):
        demo.render_samples(tts, tmp_path, [("nobody", "neutral")], "Hi.")
    with pytest.raises(TypeError, match="engine must provide"):
        demo.build_demo(object())
