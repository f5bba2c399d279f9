"""What a model was trained on, checked before generating: emotions and (voice, emotion) pairs.

An export records its training coverage (``optimum_tts.json``'s ``"coverage"``, written by
:func:`helpers.plan.coverage.model_record`); :func:`check_emotion` reads it so that the engine
refuses an emotion the model never heard and warns for a built-in voice that never spoke it.
This module is the engine's side of that record and imports nothing of training.
"""
from __future__ import annotations

import warnings

from ..tokens import DEFAULT_EMOTION

MIN_EMOTION_MINUTES = 10.0  # an emotion generate() accepts has at least this much in the emotion stage


def voice_emotion_minutes(record: dict | None, voice: str, emotion: str) -> float | None:
    """Minutes of (voice, emotion) in a model's coverage record; None when there is no record."""
    if not record:
        return None
    return float(record.get("voice_emotion_minutes", {}).get(voice, {}).get(emotion, 0.0))


class UntrainedEmotionWarning(UserWarning):
    """A (voice, emotion) pair, or an emotion, without training data: the output is a guess."""


def check_emotion(record: dict | None, emotion: str, voice: str | None = None) -> None:
    """What :class:`helpers.infer.engine.OptimumTTS` does before generating with ``emotion``.

    ``record``: the model's coverage record (``optimum_tts.json``'s ``"coverage"``). With one, an
    emotion outside its ``trained_emotions`` raises ValueError listing them, and a built-in
    ``voice`` with no minutes of ``emotion`` warns (:class:`UntrainedEmotionWarning`). Without
    one (a stage folder, or an export of an older version) any emotion but the default warns that
    nothing can be checked. That branch stays light on purpose: an installed engine (the wheel)
    has no training modules to recompute the recipe's coverage with.
    """
    if record:
        trained = list(record.get("trained_emotions", []))
        if emotion not in trained:
            raise ValueError(f"emotion {emotion!r} was not trained in this model (under "
                             f"{record.get('min_emotion_minutes', MIN_EMOTION_MINUTES):g} min of data); trained "
                             f"emotions: {', '.join(trained) or 'none'}")
        if voice is not None and voice_emotion_minutes(record, voice, emotion) <= 0:
            warnings.warn(f"built-in voice {voice!r} was never trained with emotion {emotion!r} (0 minutes of that "
                          f"pair); the result may not sound {emotion}", UntrainedEmotionWarning, stacklevel=2)
        return
    if emotion != DEFAULT_EMOTION:
        warnings.warn(f"this model records no training coverage (no optimum_tts.json 'coverage'): whether emotion "
                      f"{emotion!r} was trained cannot be checked (`python -m helpers.plan --coverage` shows "
                      f"what the recipe's data trains)", UntrainedEmotionWarning, stacklevel=2)
