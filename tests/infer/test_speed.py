"""OpenAI's speed: pitch-preserving WSOLA time-scaling (helpers/infer/speed.py, needs audiotsm)."""
import numpy as np
import pytest

audiotsm = pytest.importorskip("audiotsm")


def _tone(seconds=2.0, f0=180.0, sr=24000):
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * f0 * t)).astype(np.float32)


def _peak_hz(x, sr=24000):
    return np.fft.rfftfreq(len(x), 1 / sr)[np.argmax(np.abs(np.fft.rfft(x)))]


@pytest.mark.parametrize("speed", [0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 4.0])
def test_speed_changes_length_and_keeps_pitch(speed):
    from helpers.infer.speed import change_speed

    x = _tone()
    y = change_speed(x, speed)
    assert len(y) == round(len(x) / speed) and y.dtype == np.float32
    assert abs(_peak_hz(y) - 180.0) < 3.0  # pitch kept (resampling would move it to 180 * speed)


@pytest.mark.parametrize("speed", [0.5, 2.0])
def test_streamed_speed_equals_whole(speed):
    from helpers.infer.speed import SpeedStream, change_speed

    x = _tone(2.3)
    s = SpeedStream(speed)
    parts = [s.push(x[i:i + 2048]) for i in range(0, len(x), 2048)] + [s.flush()]
    assert np.array_equal(np.concatenate(parts), change_speed(x, speed))


@pytest.mark.parametrize("bad", [0.2, 4.5, 0, -1, float("nan"), "2", True])
def test_speed_range(bad):
    from helpers.infer.speed import check_speed

    with pytest.raises(ValueError):
        check_speed(bad)


def test_speed_one_streams_without_audiotsm(monkeypatch):
    """The speech server streams every request through SpeedStream; at speed 1.0 it must not need audiotsm
    (the GPU image has none: gpu_check's HTTP step answered 500 on torch 2.11's replica)."""
    import sys

    from helpers.infer.speed import SpeedStream

    monkeypatch.setitem(sys.modules, "audiotsm", None)  # import audiotsm -> ImportError
    monkeypatch.setitem(sys.modules, "audiotsm.io.array", None)
    x = _tone(0.5)
    s = SpeedStream(1.0)
    out = np.concatenate([s.push(x[:5000]), s.push(x[5000:]), s.flush()])
    np.testing.assert_array_equal(out, x)
    with pytest.raises(ImportError):
        SpeedStream(1.5)
