"""Publishing (notebook 08): export the final model, write its model card, upload it.

Three steps, each re-runnable on its own, each in its own module; 08 reaches all three
through this one (the names are re-exported here):

1. :func:`helpers.publish.export.export_model` — the newest finished stage becomes a
   self-contained folder ``RunPaths.export`` (weights, tokenizer, generation config,
   ``optimum_tts.json``, NOTICE, card, samples; nothing private).
2. :func:`helpers.publish.model_card.write_model_card` — ``README.md`` built only from the run's records.
3. :func:`upload_export` (here) — creates the Hub repo (private by default) and uploads
   exactly the files :func:`helpers.publish.export.export_listing` lists. ``dry_run=True`` (the tiny
   profile's default) returns that listing without touching the network. The
   token comes from :func:`helpers.models.get_hf_token` (env ``HF_TOKEN`` or the
   Colab secret) and is never printed, logged or written; error messages are
   scrubbed of it. A missing token or a failed upload raises a clear error and
   leaves the export untouched for a retry. The repo name and write access are
   checked first (:mod:`helpers.colab.hub_access`).

Nothing here runs at import time.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .export import CARD_FILE, SAMPLES_DIR, ExportError, ExportFile, export_listing, MODEL_NAME, _fmt_bytes
from ..colab.hub_access import check_repo_id
from .model_card import EVAL_REPORT_FILE, eval_table
from ..profiles import Profile, RunPaths
from ..models import get_hf_token

class HubTokenError(RuntimeError):
    """No Hugging Face token was found for the upload."""


class UploadError(RuntimeError):
    """The Hub refused or the network failed; the export folder is untouched."""



# ----------------------------------------------------------------------------- upload
def default_dry_run(profile: Profile, dry_run: bool | None = None) -> bool:
    """``dry_run`` if given; else True for an offline profile (tiny: nothing leaves the machine), False for colab."""
    return bool(dry_run) if dry_run is not None else profile.offline


def where(paths: RunPaths) -> str:
    """Where 08 left things: the export, its card and sample audio, the evaluation report."""
    samples = sorted((paths.export / SAMPLES_DIR).glob("*.wav"))
    _, eval_source = eval_table(paths)
    lines = [f"export (uploaded folder): {paths.export}",
             f"model card:               {paths.export / CARD_FILE}",
             f"demo audio:               {paths.export / SAMPLES_DIR} ({len(samples)} clips)"]
    report = paths.eval / EVAL_REPORT_FILE
    lines.append(f"evaluation report:        {report}" if report.is_file() else f"evaluation report:        none ({eval_source})")
    return "\n".join(lines)


@dataclass
class UploadResult:
    repo_id: str
    private: bool
    dry_run: bool
    files: list[ExportFile]
    url: str | None  # the repo's URL after a real upload; None for a dry run
    folder: Path
    commit: str | None = None

    @property
    def total_bytes(self) -> int:
        return sum(f.bytes for f in self.files)

    def table(self):
        import pandas as pd

        rows = [{"file": f.path, "size": _fmt_bytes(f.bytes), "bytes": f.bytes} for f in self.files]
        rows.append({"file": f"TOTAL ({len(self.files)} files)", "size": _fmt_bytes(self.total_bytes),
                     "bytes": self.total_bytes})
        return pd.DataFrame(rows)

    def __str__(self) -> str:
        vis = "private" if self.private else "public"
        if self.dry_run:
            head = (f"DRY RUN: nothing was uploaded. A real run would create the {vis} model repo "
                    f"{self.repo_id} and upload these {len(self.files)} files ({_fmt_bytes(self.total_bytes)}) "
                    f"from {self.folder}:")
        else:
            head = f"uploaded {len(self.files)} files ({_fmt_bytes(self.total_bytes)}) to the {vis} repo {self.url}"
        lines = [head] + [f"  {f.path:<40} {_fmt_bytes(f.bytes):>10}" for f in self.files]
        lines.append(f"  {'total':<40} {_fmt_bytes(self.total_bytes):>10}")
        return "\n".join(lines)


def _redact(text: str, secret: str | None) -> str:
    return text.replace(secret, "<redacted>") if secret else text


def upload_export(folder: str | os.PathLike, repo_id: str, *, private: bool = True, dry_run: bool = False,
                  token: str | None = None, commit_message: str = f"Upload {MODEL_NAME}", api=None) -> UploadResult:
    """Create ``repo_id`` on the Hub (``private`` by default) and upload the export ``folder``.

    ``dry_run``: return the listing (file names, sizes, total) of what would be uploaded,
    touching neither the network nor the token. Otherwise the token is ``token`` or
    :func:`helpers.models.get_hf_token` (env ``HF_TOKEN``, then the Colab secret);
    ``api`` defaults to ``huggingface_hub.HfApi()`` (tests pass a stand-in).
    Raises :class:`HubTokenError` without a token and :class:`UploadError` when the Hub
    refuses or the network fails; both leave the export as it was, so rerunning retries.
    """
    check_repo_id(repo_id)
    folder = Path(folder)
    files = export_listing(folder)
    if CARD_FILE not in {f.path for f in files}:
        raise ExportError(f"{folder} has no {CARD_FILE}: write the model card (write_model_card) before uploading")
    if dry_run:
        return UploadResult(repo_id, private, True, files, None, folder)
    if token is None:
        token = get_hf_token()
    if not token:
        raise HubTokenError(
            "No Hugging Face token: nothing was uploaded and the export is unchanged. Create a token with "
            "'write' access at https://huggingface.co/settings/tokens, then in Colab add it under Secrets "
            "(key icon) as HF_TOKEN with notebook access on, or set the HF_TOKEN environment variable, "
            "and rerun this cell.")
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi()
    try:
        repo_url = api.create_repo(repo_id, token=token, private=private, repo_type="model", exist_ok=True)
        commit = api.upload_folder(repo_id=repo_id, folder_path=str(folder), token=token, repo_type="model",
                                   commit_message=commit_message, allow_patterns=[f.path for f in files])
    except Exception as e:  # any Hub/network failure: report it without the token, keep the export
        # `from None`: the original exception (whose text or request headers may hold the token)
        # is not chained into the traceback; its type and scrubbed message are in ours.
        detail = _redact(f"{type(e).__name__}: {e}", token)
        raise UploadError(
            f"Upload of {folder} to {repo_id} failed ({detail}). The export is intact; check the token has "
            f"'write' access and that the repo name is yours or your organisation's, then rerun this cell "
            f"to retry.") from None
    url = str(getattr(repo_url, "url", None) or repo_url or f"https://huggingface.co/{repo_id}")
    return UploadResult(repo_id, private, False, files, url, folder,
                        commit=getattr(commit, "oid", None) or getattr(commit, "commit_url", None))


__all__ = [ "CARD_FILE", "SAMPLES_DIR", "ExportError", "HubTokenError", "UploadError", "eval_table", "ExportFile", "export_listing", "default_dry_run", "where", "UploadResult", "upload_export", "EVAL_REPORT_FILE", "MODEL_NAME", "check_repo_id",
]
