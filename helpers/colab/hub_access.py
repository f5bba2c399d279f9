"""Who the Hugging Face token belongs to, what it may do, and where 08 publishes.

Used by :mod:`helpers.plan.preflight` (before any long work) and by notebook 08 (before the
export). Every function takes an ``api`` (``huggingface_hub.HfApi()`` by default); the
tests pass a stand-in. Nothing here reads the network at import time.

The Llama 3.2 Community License, §1.b.i, asks that a model built from Llama carries
"Llama" at the beginning of its name: the default repo name does, and any other name
gets :func:`licence_name_warning`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..profiles import Profile
from ..models import get_hf_token

DEFAULT_MODEL_NAME = "Llama-3.2-3B-OptimumLLM-Audio"  # starts with "Llama" (licence §1.b.i)
PLACEHOLDER_USER = "your-username"  # stands for the hub user in a dry run without a token
LLAMA_NAME_CLAUSE = (
    "Llama 3.2 Community License §1.b.i: \"If you use the Llama Materials or any outputs or results of the "
    "Llama Materials to create, train, fine tune, or otherwise improve an AI model, which is distributed or made "
    "available, you shall also include 'Llama' at the beginning of any such AI model name.\"")
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.\-]{0,95}$")


class PublishAccessError(PermissionError):
    """The token cannot create or write the target repo (checked before exporting)."""


@dataclass(frozen=True)
class TokenInfo:
    """What ``whoami`` says about a token."""

    user: str
    orgs: tuple[str, ...] = ()
    role: str = "unknown"  # "read", "write", "fineGrained" or "unknown"
    write_to: tuple[str, ...] = ()  # fine-grained tokens: owners it may write repos of
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def can_write_somewhere(self) -> bool:
        return self.role == "write" or bool(self.write_to)

    def can_write(self, owner: str) -> bool:
        """True when this token may create/write a model repo under ``owner``."""
        if owner != self.user and owner not in self.orgs:
            return False
        return self.role == "write" or owner in self.write_to

    @property
    def scope(self) -> str:
        if self.role == "fineGrained":
            return "fine-grained" + (f" (write: {', '.join(self.write_to)})" if self.write_to else " (no repo write)")
        return self.role


def _api(api):
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi()
    return api


def token_info(token: str, api=None) -> TokenInfo:
    """``whoami`` for ``token``: user, organisations, scope. Raises what the Hub raises."""
    data = _api(api).whoami(token=token)
    user = data.get("name") or ""
    if not user:
        raise ValueError("the Hub's whoami answer names no user")
    orgs = tuple(o.get("name", "") for o in data.get("orgs") or () if o.get("name"))
    access = ((data.get("auth") or {}).get("accessToken") or {})
    role = access.get("role") or "unknown"
    write_to: list[str] = []
    for scoped in ((access.get("fineGrained") or {}).get("scoped") or ()):
        perms = scoped.get("permissions") or ()
        entity = (scoped.get("entity") or {}).get("name")
        if entity and "repo.write" in perms:
            write_to.append(entity)
    return TokenInfo(user=user, orgs=orgs, role=role, write_to=tuple(write_to), raw=data)


def default_repo_id(user: str, profile: Profile) -> str:
    """``<user>/Llama-3.2-3B-OptimumLLM-Audio`` plus the profile's ``repo_suffix`` (``-pilot`` for the pilot)."""
    return f"{user}/{DEFAULT_MODEL_NAME}{profile.repo_suffix}"


def check_repo_id(repo_id: str) -> None:
    if not isinstance(repo_id, str) or not _REPO_ID.match(repo_id) or ".." in repo_id:
        raise ValueError(f"repo_id must look like 'your-username/{DEFAULT_MODEL_NAME}' (owner/name, letters, "
                         f"digits, '-', '_', '.'), got {repo_id!r}")


def licence_name_warning(repo_id: str, built_with_llama: bool) -> str | None:
    """The warning for a Llama derivative whose model name does not start with "Llama", else None."""
    name = repo_id.split("/", 1)[-1]
    if not built_with_llama or name.startswith("Llama"):
        return None
    return (f"The model name {name!r} does not start with \"Llama\". {LLAMA_NAME_CLAUSE} "
            f"Rename it, e.g. {repo_id.split('/', 1)[0]}/{DEFAULT_MODEL_NAME}.")


@dataclass(frozen=True)
class PublishTarget:
    """Where 08 uploads, decided and checked before the export."""

    repo_id: str
    user: str | None  # the token's user (None in a dry run without a token)
    warnings: tuple[str, ...] = ()
    checked: bool = False  # True when write access was confirmed with the Hub

    def __str__(self) -> str:
        head = f"publishing to {self.repo_id}" + (" (write access confirmed)" if self.checked else
                                                  " (dry run: access not checked)")
        return "\n".join([head] + [f"WARNING: {w}" for w in self.warnings])


def publish_target(repo_id: str | None, *, profile: Profile, built_with_llama: bool, dry_run: bool,
                   token: str | None = None, api=None) -> PublishTarget:
    """Resolve ``repo_id`` (None: :func:`default_repo_id` of the token's user) and check it early.

    A real upload (``dry_run`` False) needs a token whose ``whoami`` user or organisation owns
    the repo and that may write there; otherwise :class:`PublishAccessError` says what to fix,
    before hours of export work. A dry run only resolves the name (no network without a token).
    """
    if token is None and not dry_run:

        token = get_hf_token()
    info = None
    if token:
        try:
            info = token_info(token, api)
        except Exception as e:  # network, bad token...: fatal only for a real upload
            detail = f"{type(e).__name__}: {e}".replace(token, "<redacted>").splitlines()[0]
            if not dry_run:
                raise PublishAccessError(
                    f"Could not ask the Hub who the HF_TOKEN belongs to ({detail}): check the token at "
                    f"https://huggingface.co/settings/tokens and the network, then rerun this cell.") from None
    elif not dry_run:
        raise PublishAccessError(
            "No Hugging Face token: create one with 'write' access at https://huggingface.co/settings/tokens, "
            "add it in Colab under Secrets (key icon) as HF_TOKEN with notebook access on, and rerun this cell.")
    user = info.user if info else None
    if repo_id is None:
        repo_id = default_repo_id(user or PLACEHOLDER_USER, profile)
    check_repo_id(repo_id)
    warnings = tuple(w for w in [licence_name_warning(repo_id, built_with_llama)] if w)
    if dry_run:
        return PublishTarget(repo_id, user, warnings, checked=False)
    owner = repo_id.split("/", 1)[0]
    if owner != info.user and owner not in info.orgs:
        raise PublishAccessError(
            f"The token belongs to {info.user!r} (organisations: {', '.join(info.orgs) or 'none'}), which cannot "
            f"create repos under {owner!r}: set repo_id = None (publishes as {default_repo_id(info.user, profile)}) "
            f"or to '<{info.user} or one of your organisations>/<name starting with Llama>'.")
    if not info.can_write(owner):
        raise PublishAccessError(
            f"The HF token of {info.user!r} has scope {info.scope!r}, which cannot write to {owner!r}: create a "
            f"token with 'write' access at https://huggingface.co/settings/tokens, store it as the HF_TOKEN "
            f"secret, and rerun this cell.")
    return PublishTarget(repo_id, user, warnings, checked=True)
