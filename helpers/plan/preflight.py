"""Preflight: check in minutes, before any long work, everything a run will need.

    python -m helpers.plan.preflight --profile colab          (or pilot, tiny; --publish: 08's write scope too)

and a cell near the top of notebooks 00 and 01 (:func:`run`). One row per check —
check · status · what was found · what to do:

* **HF token**: present (env ``HF_TOKEN`` or the Colab secret) and its scope from ``whoami``
  (read is enough for 01–07; 08 needs write: ``--publish`` makes that blocking);
* **base model** and **codec**: the token may download them (the Llama 3.2 licence accepted);
* **every dataset of the selected phases** (``--phases 1 2 3``): access (gating / terms), the
  catalog's config and split names exist, one row streams, its columns are the ones the
  catalog reads and :func:`helpers.data.catalog.to_common` maps it;
* **Drive**: mounted (when the run lives there) and free space against the modelled need of
  the whole run (:func:`modelled_drive_gb`);
* **Google sign-in (Drive API)**: consent given in the setup cell, so that checkpoints are
  confirmed on Drive itself (not the mount's cache) and nothing asks for a click once a stage runs;
* **GPU**: the type against the plan (an A100 for colab and pilot; anything for tiny).

Each check catches its own failure and reports it as a row with the reason: offline and
without a token every hub check fails with its reason, never a traceback. :func:`run`
raises :class:`PreflightError` (its message is the table) when anything blocks; the
command exits 1. ``tiny`` checks the offline stand-ins and passes on any machine.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from ..data.catalog import PHASES, Col, Derived, get_spec, open_dataset, to_common
from ..profiles import ASSETS_CORPUS, RANDOM_SNAC_24KHZ, TINY_LLAMA, Profile, as_profile
from ..colab.drive import current_api
from ..colab.hub_access import token_info
from ..models import get_hf_token

OK, FAILED, WARNING, SKIPPED = "ok", "FAILED", "warning", "skipped"
GB = 1e9
MIN_GPU_GIB = 39.0  # an A100 40 GB reports ~39.4 GiB


class PreflightError(RuntimeError):
    """Something a run needs is missing; the message is the preflight table."""


@dataclass
class Check:
    check: str
    status: str
    found: str
    todo: str = ""

    @property
    def blocking(self) -> bool:
        return self.status == FAILED


def _reason(e: BaseException, token: str | None = None) -> str:
    text = f"{type(e).__name__}: {e}".strip()
    if token:
        text = text.replace(token, "<redacted>")
    line = next((l.strip() for l in text.splitlines() if l.strip()), type(e).__name__)
    return line if len(line) <= 220 else line[:217] + "..."


def _hub_error_todo(e: BaseException, what: str, url: str) -> str:
    name = type(e).__name__
    if name == "GatedRepoError":
        return f"accept the terms of {what} at {url} while logged in (approval can take minutes), then rerun"
    if name in ("RepositoryNotFoundError", "DatasetNotFoundError"):
        return f"{what} was not found or needs a token: check the id at {url} and the HF_TOKEN secret"
    if name in ("OfflineModeIsEnabled",) or "offline" in str(e).lower():
        return "this machine is offline (HF_HUB_OFFLINE): run the preflight where the Hub is reachable"
    return f"check the network and {url}, then rerun"


# ----------------------------------------------------------------------------- the checks
def check_token(profile: Profile, token: str | None, *, publish: bool, api=None) -> tuple[Check, object]:
    if profile.offline:
        return Check("HF token", OK, f"not needed: the {profile.name} profile is offline"), None
    if not token:
        return Check("HF token", FAILED, "no HF_TOKEN (environment variable or Colab secret)",
                     "create a token at https://huggingface.co/settings/tokens ('write' scope: 08 uploads with it) "
                     "and add it in Colab under Secrets (key icon) as HF_TOKEN with notebook access on"), None

    try:
        info = token_info(token, api)
    except Exception as e:
        return Check("HF token", FAILED, f"whoami failed: {_reason(e, token)}",
                     "check the token at https://huggingface.co/settings/tokens and the network"), None
    found = f"user {info.user!r}, scope {info.scope}"
    if info.can_write_somewhere:
        return Check("HF token", OK, found), info
    return Check("HF token", FAILED if publish else WARNING, found + ": enough for 01–07, not for 08's upload",
                 "create a token with 'write' scope for 08 and replace the HF_TOKEN secret"), info


def check_model(label: str, name: str, token: str | None, *, api=None) -> Check:
    if name in (TINY_LLAMA, RANDOM_SNAC_24KHZ) or os.path.isdir(name):
        return Check(label, OK, f"{name}: built or read locally, no download")
    url = f"https://huggingface.co/{name}"
    try:
        from huggingface_hub import auth_check

        (api.auth_check if api is not None else auth_check)(name, repo_type="model", token=token or None)
    except Exception as e:
        return Check(f"{label} {name}", FAILED, _reason(e, token), _hub_error_todo(e, name, url))
    return Check(f"{label} {name}", OK, "access granted")


def expected_columns(spec) -> list[str]:
    """The raw columns the catalog reads for ``spec`` (audio + every Col / Derived input)."""
    cols = [spec.audio_column]
    for rule in (spec.text, spec.speaker, spec.utterance_id, spec.gender, spec.accent, spec.emotion):
        if isinstance(rule, Col):
            cols.append(rule.name)
        elif isinstance(rule, Derived):
            cols.extend(rule.columns)
    return sorted(set(cols))


def check_dataset(name: str, roles: list[str], token: str | None, *, api=None, opener=open_dataset) -> Check:
    """Access, config and splits, one streamed row, its columns and its mapping onto the common schema."""
    spec = get_spec(name)
    where = spec.hub_id + (f" [{spec.config}]" if spec.config else "")
    label = f"dataset {name} ({where})"
    url = f"https://huggingface.co/datasets/{spec.hub_id}"
    if spec.hub_id != ASSETS_CORPUS:
        try:
            from huggingface_hub import auth_check

            (api.auth_check if api is not None else auth_check)(spec.hub_id, repo_type="dataset", token=token or None)
        except Exception as e:
            return Check(label, FAILED, _reason(e, token), _hub_error_todo(e, spec.hub_id, url))
    try:
        first = None
        for role in roles:  # every split the phases read must resolve; one row is streamed from the first
            ds = opener(spec, role, streaming=True, token=token or None)
            if first is None:
                first = (role, next(iter(ds)))
    except StopIteration:
        return Check(label, FAILED, f"split role {roles[0]!r} streams no rows", f"check {url}")
    except Exception as e:
        return Check(label, FAILED, _reason(e, token),
                     f"the catalog's config/splits do not match {url}: fix helpers/data/catalog.py ({name})")
    role, row = first
    want = expected_columns(spec)
    missing = [c for c in want if c not in row]
    if missing:
        return Check(label, FAILED, f"streamed row lacks columns {missing} (has {sorted(row)})",
                     f"update the {name!r} entry of helpers/data/catalog.py to the columns of {url}")
    try:
        to_common(spec, row)
    except Exception as e:
        return Check(label, FAILED, f"row does not map onto the common schema: {_reason(e)}",
                     f"update the {name!r} entry of helpers/data/catalog.py")
    splits = ", ".join(s for r in roles for s in spec.split_names(r))
    return Check(label, OK, f"splits {splits} found; one row streamed, columns as the catalog expects")


def modelled_drive_gb(profile: Profile | str) -> float:
    """Drive peak of a whole run (00→08) in GB, Trash included: the run plan's figure
    (:func:`helpers.plan.costs.build_plan`, which replays the trainer's checkpoint policy). Modelled."""
    from .costs import build_plan

    prof = as_profile(profile)
    return round(build_plan(prof)["totals"]["drive_peak_gb"], 1)


def check_drive(profile: Profile, runs_root: str | None = None) -> Check:
    root = Path(runs_root or profile.runs_root)
    need = modelled_drive_gb(profile)
    if str(root).startswith("/content/drive"):
        mydrive = Path("/content/drive/MyDrive")
        if not mydrive.is_dir():
            return Check("Drive", FAILED, "Google Drive is not mounted" + ("" if "google.colab" in sys.modules
                                                                          else " (not running in Colab)"),
                         "run this in Colab and allow the Drive mount (the notebooks' session cell mounts it)")
        probe = mydrive
    else:
        probe = root
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
    free = shutil.disk_usage(probe).free / GB
    found = f"{free:.0f} GB free at {probe}; the run needs ~{need:g} GB (modelled)"
    if free < need:
        return Check("Drive", FAILED, found, f"free {need - free:.0f} GB more (or buy Google One storage) before 01")
    return Check("Drive", OK, found)


def check_drive_api(profile: Profile, runs_root: str | None = None) -> Check:
    """Everything that can prompt happened in the setup cell: the Drive API consent in particular."""
    label = "Google sign-in (Drive API)"
    if current_api() is not None:
        return Check(label, OK, "consent given in the setup cell: checkpoints are confirmed on Drive before the "
                                "previous one is deleted; no prompt after this cell")
    if not str(runs_root or profile.runs_root).startswith("/content/drive"):
        return Check(label, SKIPPED, "the run directory is on a local disk: nothing to confirm on Drive")
    return Check(label, FAILED, "no Drive API consent yet: a checkpoint in the mount's cache could not be told "
                                "from one on Drive", "run the notebook's session cell (session.start) in Colab "
                                "and allow Drive access there, before any long work")


def check_gpu(profile: Profile, *, required: bool = True) -> Check:
    if not required:
        return Check("GPU", SKIPPED, "this notebook runs on CPU", "02–08 need an A100 runtime")
    try:
        import torch

        if not torch.cuda.is_available():
            found = "no GPU: CPU only"
            if not profile.requires_gpu:
                return Check("GPU", OK, found + f" (fine for {profile.name})")
            return Check("GPU", FAILED, found, "Runtime → Change runtime type → A100 GPU (High-RAM)")
        p = torch.cuda.get_device_properties(0)
        found = f"{p.name}, {p.total_memory / 2**30:.1f} GiB"
    except Exception as e:
        return Check("GPU", FAILED, _reason(e), "use a Colab A100 runtime")
    if not profile.requires_gpu or ("A100" in p.name or "H100" in p.name) and p.total_memory / 2**30 >= MIN_GPU_GIB:
        return Check("GPU", OK, found)
    return Check("GPU", FAILED, found + f": the plan needs an A100 (≥ 40 GB)",
                 "Runtime → Change runtime type → A100 GPU; on another GPU the stage notebooks' planner may refuse")


# ----------------------------------------------------------------------------- running them
def checks(profile: str | Profile = "colab", *, phases=(1, 2, 3), token: str | None = None, publish: bool = False,
           gpu: bool = True, runs_root: str | None = None, api=None, opener=open_dataset) -> list[Check]:
    """Every check for ``profile``; ``token`` None reads HF_TOKEN / the Colab secret."""
    prof = as_profile(profile)
    if token is None and not prof.offline:
        token = get_hf_token()
    out = []

    def guarded(label, fn, *a, **k):
        try:
            return fn(*a, **k)
        except Exception as e:  # a check must never end the preflight
            return Check(label, FAILED, _reason(e, token), "report this as a bug")

    tok = guarded("HF token", check_token, prof, token, publish=publish, api=api)
    out.append(tok[0] if isinstance(tok, tuple) else tok)
    out.append(guarded("base model", check_model, "base model", prof.base_model, token, api=api))
    out.append(guarded("codec", check_model, "codec", prof.snac_model, token, api=api))
    roles: dict[str, list[str]] = {}
    for n in phases:
        if n not in PHASES:
            raise ValueError(f"phases are {sorted(PHASES)}, got {n!r}")
        for e in PHASES[n].entries:
            name = "assets" if prof.data_source == ASSETS_CORPUS else e.dataset
            role = "train" if name == "assets" else e.split_role
            if role not in roles.setdefault(name, []):
                roles[name].append(role)
    for name, rs in roles.items():
        out.append(guarded(f"dataset {name}", check_dataset, name, rs, token, api=api, opener=opener))
    out.append(guarded("Drive", check_drive, prof, runs_root))
    out.append(guarded("Google sign-in (Drive API)", check_drive_api, prof, runs_root))
    out.append(guarded("GPU", check_gpu, prof, required=gpu))
    return out


def table(rows: list[Check]) -> str:
    """A plain-text table: check · status · found · what to do."""
    head = ("check", "status", "found", "what to do")
    data = [head] + [(r.check, r.status, r.found, r.todo or "—") for r in rows]
    w = [min(max(len(r[i]) for r in data), cap) for i, cap in enumerate((60, 8, 90, 200))]
    lines = []
    for i, r in enumerate(data):
        lines.append("  ".join(str(c).ljust(w[j]) if j < 3 else str(c) for j, c in enumerate(r)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * x for x in w))
    return "\n".join(lines)


def run(profile: str = "colab", **kw) -> list[Check]:
    """Run :func:`checks`, print the table (a DataFrame in a notebook) and raise if anything blocks."""
    rows = checks(profile, **kw)
    text = table(rows)
    print(text)
    bad = [r.check for r in rows if r.blocking]
    if bad:
        raise PreflightError(f"preflight: {len(bad)} check(s) failed ({', '.join(bad)}); fix them (see 'what to "
                             f"do') and rerun before any long work:\n{text}")
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m helpers.plan.preflight", description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="colab", help="colab, pilot or tiny (default colab)")
    ap.add_argument("--phases", type=int, nargs="+", default=[1, 2, 3], help="data phases to check (default 1 2 3)")
    ap.add_argument("--publish", action="store_true", help="08 will upload: the token must have write scope")
    ap.add_argument("--no-gpu", action="store_true", help="this runtime is CPU-only on purpose (notebook 01)")
    ap.add_argument("--runs-root", default=None, help="where the run directory lives (default: the profile's)")
    args = ap.parse_args(argv)
    try:
        rows = checks(args.profile, phases=tuple(args.phases), publish=args.publish, gpu=not args.no_gpu,
                      runs_root=args.runs_root)
    except ValueError as e:  # an unknown profile or phase
        print(f"preflight: {e}", file=sys.stderr)
        return 2
    print(table(rows))
    bad = [r for r in rows if r.blocking]
    print(f"\n{len(rows) - len(bad)} of {len(rows)} checks passed" +
          (f"; {len(bad)} failed: fix them before any long work." if bad else "."))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
