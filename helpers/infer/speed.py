"""OpenAI's ``speed`` (0.25-4.0) as pitch-preserving time-scale modification of the decoded audio.

The model has no speaking-rate control, so ``speed`` is applied to the audio after SNAC
decoding, with WSOLA (waveform-similarity overlap-add) from ``audiotsm``:

* WSOLA works in the time domain: each output frame is the input frame, near the expected
  position, that best continues the previous one, so pitch and formants are kept and speech
  has none of the "phasiness" a phase vocoder (librosa's ``time_stretch``) adds to voices;
* ``audiotsm`` (MIT) is made for exactly this, is pure numpy (no compiled code, no system
  library such as rubberband), processes a stream piece by piece (:class:`SpeedStream`, so
  streamed responses stay streamed), and takes ~5 ms per second of 24 kHz audio on one core;
* ``pytsmod`` has WSOLA too but is GPL-3.0 (this package is not); rubberband needs its C++
  library or command-line tool installed on the machine.

Frame 1024 samples (43 ms at 24 kHz, about 4 pitch periods of a low voice), audiotsm's
defaults for the hops and tolerance. ``speed`` s gives ``round(n / s)`` samples: 0.5 is twice
as long, 2.0 half as long.
"""
from __future__ import annotations

import numpy as np

SPEED_MIN, SPEED_MAX = 0.25, 4.0  # OpenAI's range for /v1/audio/speech
# samples per WSOLA frame at 24 kHz: 43 ms to slow down, 21 ms to speed up. Measured on 16 espeak-ng
# clips of assets/corpus with Whisper tiny.en (tests/infer/test_speed_wer.py): at 1.5x, 1024 gave WER
# 0.87 and 512 gave 0.49 (espeak-ng's own 1.5x rate: 0.55); at 0.75x, 1024 gave 0.20 and 512 0.30.
FRAME_LENGTH = 1024
FRAME_LENGTH_FAST = 512


def frame_length(speed: float) -> int:
    """The WSOLA frame length for ``speed`` (see :data:`FRAME_LENGTH`)."""
    return FRAME_LENGTH_FAST if speed > 1.0 else FRAME_LENGTH


def check_speed(speed) -> float:
    """``speed`` as a float in [0.25, 4.0] (``None`` -> 1.0); ValueError otherwise."""
    if speed is None:
        return 1.0
    if isinstance(speed, bool) or not isinstance(speed, (int, float)) or not np.isfinite(speed) \
            or not SPEED_MIN <= speed <= SPEED_MAX:
        raise ValueError(f"speed must be a number from {SPEED_MIN} to {SPEED_MAX} (1.0 = as generated), got {speed!r}")
    return float(speed)


def _wsola(speed: float):
    from audiotsm import wsola

    return wsola(1, speed=speed, frame_length=frame_length(speed))


class SpeedStream:
    """Time-scales audio that arrives in pieces: ``push(piece)`` returns what is final so far,
    ``flush()`` the rest. The pieces joined equal :func:`change_speed` of the whole input."""

    def __init__(self, speed: float):
        self.speed = check_speed(speed)
        self._tsm = self._writer_cls = None
        if self.speed != 1.0:  # audiotsm only where audio is time-scaled (speed 1.0 passes pieces through)
            from audiotsm.io.array import ArrayWriter

            self._tsm, self._writer_cls = _wsola(self.speed), ArrayWriter
        self.n_in = self.n_out = 0

    def _take(self, reader, flush: bool) -> np.ndarray:
        w = self._writer_cls(1)
        tsm = self._tsm
        finished = False
        while not (finished and reader.empty):
            tsm.read_from(reader)
            _, finished = tsm.write_to(w)
        if flush:
            finished = False
            while not finished:
                _, finished = tsm.flush_to(w)
        return w.data[0].astype(np.float32)

    def push(self, piece: np.ndarray) -> np.ndarray:
        piece = np.asarray(piece, dtype=np.float32).reshape(-1)
        self.n_in += len(piece)
        if self._tsm is None:
            return piece
        from audiotsm.io.array import ArrayReader

        out = self._take(ArrayReader(piece[None].astype(np.float64)), flush=False)
        return self._limit(out)

    def flush(self) -> np.ndarray:
        if self._tsm is None:
            return np.zeros(0, np.float32)
        from audiotsm.io.array import ArrayReader

        # WSOLA holds back up to a frame: feed a frame of silence, then cut to round(n_in / speed)
        out = self._take(ArrayReader(np.zeros((1, frame_length(self.speed)))), flush=True)
        out = self._limit(out)
        want = round(self.n_in / self.speed)
        if self.n_out < want:  # never short: pad the last few samples with silence
            out = np.concatenate([out, np.zeros(want - self.n_out, np.float32)])
            self.n_out = want
        return out

    def _limit(self, out: np.ndarray) -> np.ndarray:
        want = round(self.n_in / self.speed) if self._tsm is not None else self.n_in
        room = max(0, want - self.n_out) if self._tsm is not None else len(out)
        out = out[:room]
        self.n_out += len(out)
        return out


def change_speed(audio: np.ndarray, speed: float) -> np.ndarray:
    """Whole audio (float32 ``(n,)``) at ``speed`` times its rate, pitch kept: ``round(n / speed)`` samples."""
    s = SpeedStream(speed)
    return np.concatenate([s.push(audio), s.flush()])


__all__ = ["SPEED_MIN", "SPEED_MAX", "FRAME_LENGTH", "FRAME_LENGTH_FAST", "frame_length", "check_speed", "change_speed", "SpeedStream"]
