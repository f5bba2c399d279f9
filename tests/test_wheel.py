"""The installable engine: ``pip wheel .`` builds ``optimumllm-audio`` from the helpers source, and the
installed wheel, used from a folder outside the repository, loads the tiny export and runs the seed's
§8 examples (built-in voice + emotion, cloning from a reference clip, two-speaker dialogue) and streaming."""
import ast
import json
import os
import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

from helpers.profiles import REPO_ROOT
from tiny_export import make_tiny_export

# What the base install must never pull in: training, evaluation and notebook tooling.
NOT_IN_BASE = ("deepspeed", "bitsandbytes", "jiwer", "papermill")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """``python -m pip wheel . --no-deps`` of a copy of the source (the checkout stays clean);
    ``--no-build-isolation`` uses the environment's setuptools, so no download is needed."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO_ROOT / name, src / name)
    shutil.copytree(REPO_ROOT / "helpers", src / "helpers", ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp_path_factory.mktemp("dist")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation", "-w",
                        str(dist)], cwd=src, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    (whl,) = dist.glob("optimumllm_audio-*.whl")
    return whl


def test_wheel_holds_optimumllm_audio_and_no_helpers(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert "optimumllm_audio" in tops and "helpers" not in tops, sorted(tops)
    src_modules = sorted(p.relative_to(REPO_ROOT / "helpers").as_posix()
                         for p in (REPO_ROOT / "helpers").rglob("*.py"))
    wheel_modules = sorted(n.split("/", 1)[1] for n in names if n.startswith("optimumllm_audio/") and n.endswith(".py"))
    assert wheel_modules == src_modules  # every helpers module (subpackages too), one copy, nothing else
    assert "optimumllm_audio/serve.py" in names and "optimumllm_audio/infer/engine.py" in names
    assert "optimumllm_audio/data/facts/vctk.csv" in names  # package data
    assert "optimumllm_audio/infer/openai_voices.json" in names  # the server's OpenAI voice-alias table
    assert "optimumllm_audio/text/words.txt" in names  # the e-mail name splitter's word list (#34)


def test_wheel_base_requirements_are_inference_only(wheel):
    z = zipfile.ZipFile(wheel)
    meta = Parser().parsestr(z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))).decode())
    assert meta["Name"] == "optimumllm-audio"
    reqs = meta.get_all("Requires-Dist")
    base = [r for r in reqs if "extra ==" not in r]
    names = {r.split(";")[0].split(">")[0].split("=")[0].split("<")[0].strip().lower() for r in base}
    assert {"torch", "transformers", "snac", "numpy", "soundfile", "soxr", "huggingface_hub"} <= names, names
    assert not [n for n in names if n in NOT_IN_BASE], base
    extras = set(meta.get_all("Provides-Extra"))
    assert {"train", "eval", "serve", "notebooks", "vllm"} <= extras
    for pkg, extra in (("deepspeed", "train"), ("jiwer", "eval"), ("papermill", "notebooks"), ("fastapi", "serve"),
                       ("audiotsm", "serve"), ("av", "serve"), ("vllm", "vllm")):
        assert any(r.startswith(pkg) and f'extra == "{extra}"' in r for r in reqs), (pkg, extra)


USE_FROM_WHEEL = r'''
import importlib.util, json, sys
import numpy as np, soundfile as sf
import optimumllm_audio
from optimumllm_audio import OptimumTTS
from optimumllm_audio.infer.generation import LengthGuard

assert importlib.util.find_spec("helpers") is None, "helpers is importable: the test is not outside the repo"
assert optimumllm_audio.__file__.startswith(sys.argv[2]), optimumllm_audio.__file__

# The random tiny model never stops by itself: cap it at ~0.5 s of audio per chunk.
model = OptimumTTS.from_pretrained(sys.argv[1], device="cpu", length_guard=LengthGuard(0.3, 100.0, 0.5))
spf = model.codec.samples_per_frame

# Generate with built-in speaker
wav = model.generate(text="Welcome to OptimumAI.", speaker="male_us_01", emotion="friendly")
# Voice cloning from audio prompt
cloned = model.generate(text="This is my cloned voice.", audio_prompt="reference_voice.wav", emotion="excited")
# Two-speaker dialogue
mix = model.generate_dialogue(script=[("speaker1", "Welcome to the show!"), ("speaker2", "Thanks for having me.")],
                              speaker1="male_us_01", speaker2="custom_voice.wav")
streamed = np.concatenate(list(model.stream("Welcome to OptimumAI.", speaker="male_us_01", emotion="friendly")))
model.save(wav, "welcome.wav")
print(json.dumps({"sr": model.sample_rate, "spf": spf, "wav": len(wav), "cloned": len(cloned),
                  "turns": [t.voice for t in mix.turns], "mix": len(mix),
                  "stream_max_diff": float(np.abs(streamed - wav).max()) if len(streamed) == len(wav) else None,
                  "finite": bool(np.isfinite(wav).all() and np.isfinite(cloned).all()),
                  "file": sf.info("welcome.wav").frames,
                  "modules": sorted(m for m in sys.modules if m.startswith("optimumllm_audio"))}))
'''


def test_installed_wheel_outside_the_repo_runs_the_seed_examples(wheel, tmp_path):
    import soundfile as sf

    from tiny_export import speechy

    site = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target", str(site),
                        str(wheel)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (site / "optimumllm_audio" / "infer" / "engine.py").is_file() and not (site / "helpers").exists()
    assert (site / "optimumllm_audio" / "data" / "facts" / "vctk.csv").is_file()  # package data ships
    export = make_tiny_export(tmp_path / "run")
    work = tmp_path / "user"  # a user's folder: no checkout, no assets next to the installed package
    work.mkdir()
    sf.write(work / "reference_voice.wav", speechy(6.0, seed=1), 24000)
    sf.write(work / "custom_voice.wav", speechy(6.0, 16000, seed=2), 16000)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PYTHONPATH=str(site), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    r = subprocess.run([sys.executable, "-c", USE_FROM_WHEEL, str(export), str(site)], cwd=work, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-4000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["sr"] == 24000 and out["finite"]
    # 0.5 s cap at 12 frames/s of 2048 samples: 6 frames per utterance (one chunk each, no crossfade)
    assert out["wav"] == out["cloned"] == 6 * out["spf"] == out["file"]
    assert out["turns"] == ["male_us_01", "custom_voice"]
    assert out["mix"] == 2 * 6 * out["spf"] + round(0.4 * 24000)  # two turns and the default 0.4 s pause
    assert out["stream_max_diff"] is not None and out["stream_max_diff"] <= 1e-5
    # inference stays on the base dependencies: no training module was loaded, and the modules that
    # were import only the standard library and the base requirements at module level
    loaded = set(out["modules"])
    assert not {m for m in loaded if m.split(".")[1:2] in (["train"], ["data"], ["plan"], ["colab"])}, loaded
    base = {"torch", "transformers", "tokenizers", "safetensors", "huggingface_hub", "snac", "numpy", "soundfile",
            "soxr", "pyloudnorm", "num2words"}
    for mod in loaded:
        path = site / (mod.replace(".", "/") + ("/__init__.py" if (site / mod.replace(".", "/")).is_dir() else ".py"))
        for node in ast.parse(path.read_text()).body:
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            for name in names:
                top = name.split(".")[0]
                assert top in sys.stdlib_module_names or top in base or top == "__future__", (mod, name)
