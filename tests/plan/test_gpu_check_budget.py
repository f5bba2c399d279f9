"""scripts/gpu_check.sh --dry-run: every step falls in exactly one of the device calls it names, and each call
fits the 9-minute (540 s) budget with the wheel install; the stage-2 calls hold the comparisons of issue 32."""
import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _dry(*args):
    p = subprocess.run(["bash", str(REPO / "scripts" / "gpu_check.sh"), "--dry-run", *args], capture_output=True,
                       text=True, timeout=60, cwd=REPO)
    assert p.returncode == 0, p.stderr
    return p.stdout


def test_every_device_call_fits_and_every_step_is_in_one_call():
    out = _dry()
    steps = re.findall(r"^\s+\[\s*(\d+)s\] (.+)$", out, re.M)
    calls = re.findall(r"device call --only '(.+?)'\s+(\d+) s \+ (\d+) s wheels =\s+(\d+) s of (\d+) s: (\w+)", out)
    assert len(steps) >= 7 and len(calls) == 4
    for regex, steps_s, wheels_s, total, limit, flag in calls:
        assert int(total) == int(steps_s) + int(wheels_s) <= int(limit) == 540 and flag == "ok", regex
        assert int(steps_s) == sum(int(b) for b, name in steps if re.search(regex, name))
    for budget, name in steps:  # exactly one call runs each step
        assert sum(bool(re.search(c[0], name)) for c in calls) == 1, name
    assert "exceeds one 540-s call" in out  # the whole check is more than one call, and says so
    stage_b = next(name for _, name in steps if name.startswith("stage 2 B"))
    cmd = out.split(stage_b, 1)[1].splitlines()[1]
    assert "--optimizer adamw_bf16_torchao" in cmd and "--kernels liger" in cmd and cmd.count("bench_train.py") == 3


def test_one_call_selected_prints_only_its_budget():
    out = _dry("--only", "stage 2 A")
    assert "device call --only 'stage 2 A'" in out and "stage 2 B" not in out and "exceeds" not in out


def test_the_session_order_names_every_call_once():
    out = _dry()
    calls = re.findall(r"device call --only '(.+?)'", out)
    order = re.findall(r"^    --only '(.+?)'$", out, re.M)
    assert sorted(order) == sorted(calls) and order[0] == "inference|HTTP"  # issue 31's targets first
