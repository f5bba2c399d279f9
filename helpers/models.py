"""Base-model loading for both profiles and Stage 1 (vocabulary extension).

Two profiles, one code path (DESIGN.md): ``colab`` loads ``meta-llama/Llama-3.2-3B``
from the Hub; ``tiny`` builds a 2-layer LLaMA and a byte-level BPE tokenizer offline
(:mod:`helpers.tiny_models`).
Both come back from :func:`load_base` as ``(LlamaForCausalLM, PreTrainedTokenizerFast)``
and go through the same :func:`extend_vocabulary`, :func:`save_stage` and
:func:`load_stage`.

Stage 1 (:func:`extend_vocabulary`) appends every token of
:func:`helpers.tokens.new_tokens` to the tokenizer, in that order, so that their ids
are contiguous from ``len(base tokenizer)`` (the token contract), grows the embedding
matrix to a multiple of 64 rows and initialises the new rows (see the function's
docstring for the method and why).

Stage folders are written atomically: everything goes into a hidden sibling folder,
a ``COMPLETE.json`` marker with the size and SHA-256 of every file is written last,
and only then is the folder renamed into place. :func:`load_stage` refuses a folder
without the marker, so a save interrupted by a Colab disconnect never looks finished.

Nothing here runs at import time: no model is loaded, no GPU, network or Drive touched.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

from .profiles import TINY_LLAMA
from .storage_faults import StorageFault, fault_kind, os_error_errno
from .tiny_models import build_tiny_base
from .tokens import AUDIO_VOCAB_SIZE, PAD, TokenLayout, audio_token, new_tokens

# ----------------------------------------------------------------------------- constants

COMPLETE_MARKER = "COMPLETE.json"  # written last into a stage folder; its presence means "finished"
_COMPLETE_FORMAT = 1

# Text used to check that extension left text behaviour untouched (ids and logits).
CHECK_TEXTS: tuple[str, ...] = (
    "The quick brown fox jumps over the lazy dog.",
    "Welcome to OptimumAI. How can I help you today?",
    "In 1999, she paid $3.50 for a cup of coffee (and said it was worth it)!",
)

# ----------------------------------------------------------------------------- tiny profile
def save_tiny_base(folder: str | os.PathLike, seed: int = 0) -> Path:
    """Write the tiny tokenizer + model with ``save_pretrained`` so that later code loads
    it with :func:`load_base` exactly like a hub model. Returns the folder."""
    model, tokenizer = build_tiny_base(seed)
    return _atomic_save(model, tokenizer, Path(folder), metadata={"what": "tiny base", "seed": seed})


# ----------------------------------------------------------------------------- loading
class HubAccessError(PermissionError):
    """The Hub refused a model: gated (licence not accepted) or no/invalid token."""


def get_hf_token() -> str | None:
    """The Hugging Face token from env ``HF_TOKEN``, else Colab's Secrets, else None.

    Never prints or logs the token. When none is found, prints one line saying how to
    add it (gated models such as Llama 3.2 need it). huggingface_hub also reads the
    Colab secret by itself; this function makes the lookup explicit and its failure clear.
    """
    token = os.environ.get("HF_TOKEN", "").strip()
    if token:
        return token
    try:
        from google.colab import userdata  # only exists inside Colab
    except ImportError:
        print("HF_TOKEN is not set: gated models (meta-llama/Llama-3.2-3B) will fail to load. "
              "Set the HF_TOKEN environment variable, or in Colab add it under Secrets (key icon).",
              file=sys.stderr)
        return None
    try:
        token = userdata.get("HF_TOKEN")
    except userdata.SecretNotFoundError:
        print("No HF_TOKEN in Colab Secrets: add it (key icon in the left bar, name HF_TOKEN, "
              "your token from https://huggingface.co/settings/tokens) and enable notebook access.",
              file=sys.stderr)
        return None
    except userdata.NotebookAccessError:
        print("This notebook has no access to the HF_TOKEN Colab secret: switch on "
              "'Notebook access' for HF_TOKEN in the Secrets panel (key icon) and rerun.",
              file=sys.stderr)
        return None
    return (token or "").strip() or None


def _access_message(name: str) -> str:
    return (f"The Hugging Face Hub refused access to {name!r}. It is a gated model: "
            f"1) open https://huggingface.co/{name} while logged in and accept the Llama 3.2 "
            f"licence (approval can take a few minutes); 2) create a token at "
            f"https://huggingface.co/settings/tokens; 3) in Colab add it under Secrets "
            f"(key icon) as HF_TOKEN with notebook access on, or set the HF_TOKEN "
            f"environment variable; then rerun this cell.")


def _is_access_error(exc: BaseException) -> bool:
    """True if ``exc`` or an exception it was raised from is a gated/auth refusal."""
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, (GatedRepoError, RepositoryNotFoundError)):
            return True  # the Hub answers "not found" for gated repos without a token
        if isinstance(exc, HfHubHTTPError):
            status = getattr(getattr(exc, "response", None), "status_code", None)
            if status in (401, 403):
                return True
        exc = exc.__cause__ or exc.__context__
    return False


def _resolve_dtype(dtype):
    import torch

    if dtype is None or dtype == "auto" or isinstance(dtype, torch.dtype):
        return dtype
    if isinstance(dtype, str) and isinstance(getattr(torch, dtype, None), torch.dtype):
        return getattr(torch, dtype)
    raise ValueError(f"dtype must be a torch.dtype, 'auto' or a name like 'bfloat16', got {dtype!r}")


def _from_pretrained(name: str, *, token=None, dtype=None, device_map=None, attn_implementation=None):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {}
    if dtype is not None:
        kwargs["dtype"] = dtype
    if device_map is not None:
        kwargs["device_map"] = device_map
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    tokenizer = AutoTokenizer.from_pretrained(name, token=token)
    model = AutoModelForCausalLM.from_pretrained(name, token=token, **kwargs)
    return model.eval(), tokenizer


def load_base(name_or_path: str | os.PathLike, *, token: str | None = None, dtype=None,
              device_map=None, attn_implementation: str | None = None):
    """``(model, tokenizer)`` of the base LLaMA.

    ``name_or_path``: :data:`helpers.profiles.TINY_LLAMA` (built in memory, seed 0), a
    local folder written by ``save_pretrained`` (e.g. :func:`save_tiny_base`), or a Hub
    id such as ``meta-llama/Llama-3.2-3B`` (gated; ``token`` defaults to
    :func:`get_hf_token`). ``dtype``: torch dtype, its name, or "auto"; None keeps
    transformers' default (the checkpoint's dtype in transformers 5). ``device_map``:
    passed to ``from_pretrained`` (e.g. "auto" or "cuda").
    Raises :class:`HubAccessError` with the steps to fix it when the Hub refuses access.
    """
    dtype = _resolve_dtype(dtype)
    if str(name_or_path) == TINY_LLAMA:
        model, tokenizer = build_tiny_base()
        if dtype not in (None, "auto"):
            model = model.to(dtype)
        if device_map not in (None, "auto", "cpu"):
            model = model.to(device_map)
        if attn_implementation is not None:  # e.g. "flex_attention" (helpers.train.attention)
            model.set_attn_implementation(attn_implementation)
        return model, tokenizer
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return _from_pretrained(str(path), dtype=dtype, device_map=device_map,
                                attn_implementation=attn_implementation)
    name = str(name_or_path)
    if path.exists() or name.startswith((".", "/", "~")) or name.count("/") != 1:
        raise FileNotFoundError(f"{name!r} is neither a model folder nor a Hub id like "
                                f"'meta-llama/Llama-3.2-3B' (nor {TINY_LLAMA!r})")
    if token is None:
        token = get_hf_token()
    try:
        return _from_pretrained(name, token=token, dtype=dtype, device_map=device_map,
                                attn_implementation=attn_implementation)
    except Exception as e:  # re-raised unchanged unless it is an access refusal
        if _is_access_error(e):
            raise HubAccessError(_access_message(name)) from e
        raise


# ----------------------------------------------------------------------------- stage 1
@dataclass
class ExtensionReport:
    """What :func:`extend_vocabulary` did and the checks it ran (all must hold)."""

    base_vocab_size: int  # len(tokenizer) before; first new id (LLaMA 3.2: 128,256)
    n_new_tokens: int  # contract tokens added (audio + structure/emotion/voice/non-verbal)
    n_audio_tokens: int
    vocab_size: int  # len(tokenizer) after
    embedding_rows_before: int
    embedding_rows: int  # after, a multiple of pad_to_multiple_of
    padding_rows: int  # rows no token maps to (rounding up to the multiple)
    pad_to_multiple_of: int
    params_before: int  # unique parameters (tied weights counted once)
    params_after: int
    tied_before: bool
    tied_after: bool
    init: str
    noise_std: float
    seed: int
    base_row_norm: float  # mean L2 norm of base input-embedding rows
    new_row_norm: float  # mean L2 norm of the initialised rows
    ids_contiguous: bool  # TokenLayout.from_tokenizer accepted the tokenizer
    base_ids_unchanged: bool  # check texts tokenize to identical ids before/after
    base_rows_unchanged: bool  # base embedding rows bit-identical (exact float64 fingerprint)
    max_abs_logit_diff: float  # base-vocabulary logits on check texts, before vs after
    logit_tolerance: float
    new_token_prob_mass: float  # mean softmax mass on new rows at text positions
    text_kl_nats: float  # mean KL(before || after) over text positions = -log(1 - mass)
    seconds: float
    check_texts: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (self.ids_contiguous and self.base_ids_unchanged and self.base_rows_unchanged
                and self.tied_before == self.tied_after
                and self.max_abs_logit_diff <= self.logit_tolerance
                and self.embedding_rows % self.pad_to_multiple_of == 0)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ok"] = self.ok
        return d

    def to_markdown(self) -> str:
        def yes(b):
            return "yes" if b else "**NO**"
        rows = [
            ("base vocabulary (first new id)", f"{self.base_vocab_size:,}"),
            ("new tokens (audio + other)", f"{self.n_new_tokens:,} ({self.n_audio_tokens:,} + "
                                           f"{self.n_new_tokens - self.n_audio_tokens})"),
            ("tokenizer size after", f"{self.vocab_size:,}"),
            ("embedding rows before → after", f"{self.embedding_rows_before:,} → {self.embedding_rows:,} "
                                              f"(multiple of {self.pad_to_multiple_of}, {self.padding_rows} padding rows)"),
            ("parameters before → after", f"{self.params_before:,} → {self.params_after:,} "
                                          f"(+{self.params_after - self.params_before:,})"),
            ("embeddings tied before / after", f"{self.tied_before} / {self.tied_after}"),
            ("initialisation", f"{self.init}, noise {self.noise_std} × per-dim std, seed {self.seed}"),
            ("mean row norm base / new", f"{self.base_row_norm:.4f} / {self.new_row_norm:.4f}"),
            ("new ids contiguous (contract)", yes(self.ids_contiguous)),
            ("text token ids unchanged", yes(self.base_ids_unchanged)),
            ("base embedding rows unchanged", yes(self.base_rows_unchanged)),
            ("max abs logit change, base vocab", f"{self.max_abs_logit_diff:.3g} (tolerance {self.logit_tolerance:.3g}) "
                                              f"{yes(self.max_abs_logit_diff <= self.logit_tolerance)}"),
            ("probability mass on new tokens (text)", f"{self.new_token_prob_mass:.4f} "
                                                      f"(KL {self.text_kl_nats:.4f} nats)"),
            ("time", f"{self.seconds:.1f} s"),
            ("all checks pass", yes(self.ok)),
        ]
        return "| | |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)


def _is_tied(model) -> bool:
    out = model.get_output_embeddings()
    return out is not None and out.weight is model.get_input_embeddings().weight


_ROW_CHUNK = 8192  # embedding rows per float32 chunk: bounds the temporary copy of a bf16 matrix


def _row_mean_std(weight, n_rows: int, chunk: int = _ROW_CHUNK):
    """Per-dimension mean and std (float64, shape (D,)) of ``weight[:n_rows]``, in chunks
    so a 128k × 3072 bf16 matrix never needs a full float32 copy."""
    import torch

    d = weight.shape[1]
    s = torch.zeros(d, dtype=torch.float64, device=weight.device)
    ss = torch.zeros_like(s)
    for i in range(0, n_rows, chunk):
        w = weight[i:min(i + chunk, n_rows)].detach().to(torch.float64)
        s += w.sum(0)
        ss += (w * w).sum(0)
    mean = s / n_rows
    var = (ss / n_rows - mean * mean).clamp_min(0) * (n_rows / max(n_rows - 1, 1))
    return mean, var.sqrt()


def _rows_fingerprint(model, n_rows: int) -> list:
    """Exact float64 per-dimension mean/std of the first ``n_rows`` input (and untied output)
    embedding rows: equal before and after iff the base rows were left alone (same data,
    same chunked reduction), without keeping a copy of a 128k x 3072 matrix."""
    mats = [model.get_input_embeddings().weight]
    if not _is_tied(model) and model.get_output_embeddings() is not None:
        mats.append(model.get_output_embeddings().weight)
    return [t.cpu().tolist() for w in mats for t in _row_mean_std(w, n_rows)]


def _init_rows(weight, start: int, init: str, noise_std: float, generator, initializer_range: float):
    """Overwrite ``weight[start:]`` in place; returns the mean L2 norm of the new rows."""
    import torch

    n_new, d = weight.shape[0] - start, weight.shape[1]
    noise = torch.randn(n_new, d, generator=generator, dtype=torch.float32)  # CPU: same on any device
    with torch.no_grad():
        if init == "mean":
            mean, std = _row_mean_std(weight, start)
            rows = mean.float().cpu() + noise_std * std.float().cpu() * noise
        else:  # "normal": what a freshly built model would have
            rows = initializer_range * noise
        weight[start:] = rows.to(device=weight.device, dtype=weight.dtype)
        return float(weight[start:].float().norm(dim=1).mean())


def _text_logits(model, tokenizer, texts: Sequence[str]) -> list:
    """Float32 CPU logits (1, T, V) of each text, one forward each (no padding needed)."""
    import torch

    device = model.get_input_embeddings().weight.device
    out = []
    with torch.no_grad():
        for t in texts:
            ids = torch.tensor([tokenizer(t).input_ids], device=device)
            out.append(model(input_ids=ids).logits.float().cpu())
    return out


def extend_vocabulary(model, tokenizer, *, pad_to_multiple_of: int = 64, init: str = "mean",
                      noise_std: float = 0.1, seed: int = 0,
                      check_texts: Sequence[str] = CHECK_TEXTS, strict: bool = True):
    """Stage 1: add the contract's tokens and grow + initialise the embeddings, in place.

    Tokens: every string of :func:`helpers.tokens.new_tokens`, in order, as special
    added tokens (not normalised, matched before the pre-tokenizer, so ``<|snac1_5|>``
    in a text is always exactly one id). Their ids run contiguously from
    ``len(tokenizer)`` (checked with ``TokenLayout.from_tokenizer``). The tokenizer's
    pad token becomes ``<|pad|>`` (model and generation configs follow).

    Rows: the embedding matrix grows to ``layout.padded_vocab_size(pad_to_multiple_of)``
    (tensor-core friendly). Every row from the first new id on (padding rows too) is
    initialised. ``init="mean"`` (default): ``mean + noise_std * std * N(0, I)`` with the
    per-dimension mean and std of the base rows. Why: with a new row at the mean
    embedding, a new token's logit ``h·mean`` is at most the log of the average
    exponentiated base logit (Jensen), so the new tokens take only a bounded share of
    probability and the model's text behaviour starts where the base model's was
    (Hewitt 2021, "Initializing new word embeddings"); the report measures that share.
    The noise (0.1 of the base rows' spread) makes the 12k new rows distinct, so the
    model can tell audio tokens apart at the input from step 0, while keeping their
    logits close to the mean. ``init="normal"``: N(0, initializer_range²), the
    randomly-initialised-model baseline. Deterministic given ``seed``; the global RNG is
    untouched. Tied models stay tied (Llama 3.2 3B, tiny); an untied output layer gets
    its new rows by the same rule from its own base rows.

    Checks (the :class:`ExtensionReport`; ``strict`` raises if one fails): ids contiguous,
    ``check_texts`` tokenize to the same ids, the base embedding rows are bit-identical
    (an exact float64 fingerprint), the logits over the base vocabulary are
    unchanged (float32: ≤ 1e-5 + eps; lower precision: a few ulps of the largest logit,
    since a bigger output matmul may pick a different GPU kernel), tying unchanged.

    Returns ``(model, tokenizer, layout, report)``; model and tokenizer are modified in place.
    """
    import torch
    from transformers import AddedToken

    t0 = time.time()
    if not isinstance(pad_to_multiple_of, int) or pad_to_multiple_of <= 0:
        raise ValueError(f"pad_to_multiple_of must be a positive int, got {pad_to_multiple_of!r}")
    if init not in ("mean", "normal"):
        raise ValueError(f"init must be 'mean' or 'normal', got {init!r}")
    if not noise_std >= 0:
        raise ValueError(f"noise_std must be >= 0, got {noise_std!r}")
    toks = new_tokens()
    vocab = tokenizer.get_vocab()
    present = [t for t in toks if t in vocab]
    if present:
        hint = (" (the tokenizer is already extended: load the stage-1 folder instead of extending again)"
                if audio_token(0, 0) in vocab else "")
        raise ValueError(f"tokenizer already contains {len(present)} contract token(s), e.g. "
                         f"{present[:3]}; Stage 1 needs a base tokenizer without them{hint}")
    base = len(tokenizer)
    emb = model.get_input_embeddings()
    rows_before = emb.weight.shape[0]
    if rows_before < base:
        raise ValueError(f"model has {rows_before} embedding rows but the tokenizer has {base} ids; "
                         f"they do not belong together")
    check_texts = list(check_texts)
    if not check_texts:
        raise ValueError("check_texts must hold at least one text")

    was_training = model.training
    model.eval()
    tied_before = _is_tied(model)
    params_before = count_parameters(model)
    fingerprint_before = _rows_fingerprint(model, base)
    ids_before = [tokenizer(t).input_ids for t in check_texts]
    logits_before = _text_logits(model, tokenizer, check_texts)

    added = tokenizer.add_tokens([AddedToken(t, special=True, normalized=False, lstrip=False, rstrip=False,
                                             single_word=False) for t in toks], special_tokens=True)
    if added != len(toks):
        raise RuntimeError(f"tokenizer added {added} of {len(toks)} tokens; ids would break the contract")
    layout = TokenLayout.from_tokenizer(tokenizer)  # raises if any id is off
    ids_contiguous = layout.base_vocab_size == base and len(tokenizer) == layout.vocab_size
    tokenizer.pad_token = PAD

    rows = layout.padded_vocab_size(pad_to_multiple_of)
    with torch.random.fork_rng(devices=[]):  # resize draws default init from the global RNG
        model.resize_token_embeddings(rows, mean_resizing=False)
    gen = torch.Generator().manual_seed(seed)
    irange = getattr(model.config, "initializer_range", 0.02)
    w_in = model.get_input_embeddings().weight
    new_row_norm = _init_rows(w_in, base, init, noise_std, gen, irange)
    if not _is_tied(model) and model.get_output_embeddings() is not None:
        _init_rows(model.get_output_embeddings().weight, base, init, noise_std, gen, irange)
    with torch.no_grad():
        base_row_norm = float(torch.cat([w_in[i:i + _ROW_CHUNK].float().norm(dim=1).cpu()
                                         for i in range(0, base, _ROW_CHUNK)]).mean())
    model.config.pad_token_id = layout.pad_id
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.pad_token_id = layout.pad_id

    base_rows_unchanged = _rows_fingerprint(model, base) == fingerprint_before
    ids_after = [tokenizer(t).input_ids for t in check_texts]
    logits_after = _text_logits(model, tokenizer, check_texts)
    diff, mass, kl, scale = 0.0, [], [], 0.0
    for lb, la in zip(logits_before, logits_after):
        diff = max(diff, float((la[..., :base] - lb[..., :base]).abs().max()))
        scale = max(scale, float(lb[..., :base].abs().max()))
        p_new = la.softmax(-1)[..., base:].sum(-1)  # (1, T) mass the new rows take
        mass.append(p_new.reshape(-1))
        # after = before * Z/Z' on base ids, so KL(before || after) = log(Z'/Z) = -log(1 - p_new)
        kl.append(-torch.log1p(-p_new.clamp(max=1 - 1e-12)).reshape(-1))
    dtype = w_in.dtype
    eps = torch.finfo(dtype).eps
    tol = 1e-5 + 4 * eps * scale if dtype == torch.float32 else 8 * eps * max(scale, 1.0)
    if was_training:
        model.train()
    report = ExtensionReport(
        base_vocab_size=base, n_new_tokens=len(toks), n_audio_tokens=AUDIO_VOCAB_SIZE,
        vocab_size=len(tokenizer), embedding_rows_before=rows_before, embedding_rows=rows,
        padding_rows=rows - layout.vocab_size, pad_to_multiple_of=pad_to_multiple_of,
        params_before=params_before, params_after=count_parameters(model),
        tied_before=tied_before, tied_after=_is_tied(model), init=init, noise_std=float(noise_std),
        seed=seed, base_row_norm=base_row_norm, new_row_norm=new_row_norm,
        ids_contiguous=ids_contiguous, base_ids_unchanged=ids_before == ids_after,
        base_rows_unchanged=base_rows_unchanged,
        max_abs_logit_diff=diff, logit_tolerance=float(tol),
        new_token_prob_mass=float(torch.cat(mass).mean()), text_kl_nats=float(torch.cat(kl).mean()),
        seconds=time.time() - t0, check_texts=check_texts)
    if strict and not report.ok:
        raise RuntimeError("vocabulary extension failed its checks:\n" + report.to_markdown())
    return model, tokenizer, layout, report


# ----------------------------------------------------------------------------- stage folders
class IncompleteStageError(RuntimeError):
    """A stage folder has no (or a mismatching) COMPLETE.json: it was not fully written."""


def sha256_file(path: Path, bufsize: int = 1 << 22) -> str:
    """Hex SHA-256 of a file, read in 4 MiB blocks. A read error names the file (the kernel's EIO from
    read() carries no file name: on a failing Drive mount the message would not say which file)."""
    h = hashlib.sha256()
    try:
        with path.open("rb") as f:
            while chunk := f.read(bufsize):
                h.update(chunk)
    except OSError as e:
        if e.filename is None:
            raise OSError(e.errno, e.strerror, str(path)) from e
        raise
    return h.hexdigest()


def file_hashes(path: Path, bufsize: int = 1 << 22) -> dict:
    """``{"bytes", "sha256", "md5"}`` of a file in one read: SHA-256 for the checks on any disk, md5
    because it is what the Drive API reports (``md5Checksum``)."""
    sha, md5, n = hashlib.sha256(), hashlib.md5(), 0
    with Path(path).open("rb") as f:
        while chunk := f.read(bufsize):
            sha.update(chunk)
            md5.update(chunk)
            n += len(chunk)
    return {"bytes": n, "sha256": sha.hexdigest(), "md5": md5.hexdigest()}


def _atomic_save(model, tokenizer, folder: Path, metadata: dict | None = None) -> Path:
    """save_pretrained into a hidden sibling, write the marker last, then rename into place."""
    folder = Path(folder).expanduser().resolve()
    folder.parent.mkdir(parents=True, exist_ok=True)
    for stale in folder.parent.glob(f".{folder.name}.partial-*"):  # leftovers of a killed save
        shutil.rmtree(stale, ignore_errors=True)
    tmp = folder.parent / f".{folder.name}.partial-{uuid.uuid4().hex[:8]}"
    try:
        model.save_pretrained(tmp)  # safetensors
        tokenizer.save_pretrained(tmp)
        files = {}
        for p in sorted(tmp.rglob("*")):
            if p.is_file():
                files[p.relative_to(tmp).as_posix()] = file_hashes(p)  # md5: what the Drive API reports
        marker = {"format": _COMPLETE_FORMAT, "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                  "files": files, "metadata": metadata or {}}
        with (tmp / COMPLETE_MARKER).open("w") as f:
            json.dump(marker, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        old = None
        if folder.exists():  # rename cannot replace a non-empty folder: move the old one aside
            old = folder.parent / f".{folder.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(folder, old)
        os.replace(tmp, folder)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def save_stage(model, tokenizer, folder: str | os.PathLike, *, metadata: dict | None = None) -> Path:
    """Save model + tokenizer (safetensors) to ``folder`` atomically; returns the folder.

    The folder appears only when complete, with ``COMPLETE.json`` listing every file's
    size and SHA-256 plus ``metadata`` (e.g. ``report.to_dict()``). An existing folder is
    replaced only after the new one is complete.
    """
    return _atomic_save(model, tokenizer, Path(folder), metadata=metadata)


def _read_fault(folder: Path, e: BaseException, what: str) -> StorageFault | None:
    """A :class:`helpers.storage_faults.StorageFault` for a stage folder that cannot be read (a dead Drive
    mount, EIO / ESTALE), naming the path, the errno and the remedy; None for any other error."""
    kind = fault_kind(e)
    if kind not in ("dead_mount", "io_error"):
        return None
    path = getattr(e, "filename", None) or folder
    return StorageFault(kind, f"{what}: a file cannot be read", path=path, errno_=os_error_errno(e))


def _unreadable_file(folder: Path, rels) -> OSError | None:
    """The first read error of ``folder``'s files (``rels``), or None: what lies behind a loader's error that
    hides it (transformers reads ``config.json`` through ``os.path.isfile``, which turns an EIO into "absent")."""
    for rel in rels:
        try:
            with (folder / rel).open("rb") as f:
                while f.read(1 << 24):
                    pass
        except FileNotFoundError:
            continue
        except OSError as e:
            return e
    return None


def read_complete_marker(folder: str | os.PathLike) -> dict:
    """The parsed ``COMPLETE.json`` of a stage folder; raises IncompleteStageError if absent, and a
    :class:`helpers.storage_faults.StorageFault` (path, errno, remedy) when the folder cannot be read."""
    folder = Path(folder)
    try:
        if not folder.is_dir():
            raise FileNotFoundError(f"stage folder {folder} does not exist; run the notebook that writes it")
        marker = folder / COMPLETE_MARKER
        if not marker.is_file():
            raise IncompleteStageError(
                f"{folder} has no {COMPLETE_MARKER}: it was not completely written (an interrupted "
                f"save?). Delete it and rerun the notebook that writes it.")
        text = marker.read_text()
    except OSError as e:
        fault = _read_fault(folder, e, f"reading the stage folder's {COMPLETE_MARKER}")
        if fault is None:
            raise
        raise fault from e
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise IncompleteStageError(f"{marker} is not valid JSON ({e}); rerun the notebook that writes it") from e
    if data.get("format") != _COMPLETE_FORMAT or not isinstance(data.get("files"), dict):
        raise IncompleteStageError(f"{marker}: unknown marker format {data.get('format')!r}")
    return data


# an upload that never reached Drive (a VM that died, Drive's quota), a damaged copy: the stage's notebook repairs it
_REPAIR = (" Rerun the notebook that wrote this folder: it sees the incomplete model and repairs it (from this VM's "
           "copy or its checkpoints, or by training the stage again when none is left); check Drive's free space first")


def files_problem(folder: str | os.PathLike, files: dict, listed_in: str, *, hashes: bool = True) -> str | None:
    """None when ``folder`` holds every file of ``files`` (``{rel: {"bytes", "sha256"}}``, as ``listed_in`` lists
    them: a stage's COMPLETE.json, a checkpoint's manifest) with its size and (``hashes``) SHA-256; else why
    not, one line. A file that cannot be read raises OSError naming it."""
    folder = Path(folder)
    for rel, info in files.items():
        p = folder / rel
        if not p.is_file():
            return f"{rel} is missing"
        if p.stat().st_size != info["bytes"]:
            return f"{rel} has {p.stat().st_size} bytes, {listed_in} says {info['bytes']} (truncated copy)"
        if hashes and sha256_file(p) != info["sha256"]:
            return f"{rel} does not match its SHA-256 in {listed_in} (a damaged copy)"
    return None


def stage_problem(folder: str | os.PathLike, data: dict | None = None, *, hashes: bool = True) -> str | None:
    """:func:`files_problem` of a stage folder against its ``COMPLETE.json`` (``data``: already read)."""
    data = read_complete_marker(folder) if data is None else data
    return files_problem(folder, data["files"], COMPLETE_MARKER, hashes=hashes)


# Files of a stage folder up to this size (configs, tokenizer) are copied to local disk, checked against
# COMPLETE.json, before transformers reads them; larger ones (the weights) are linked. transformers probes
# optional files with os.path.isfile, which reads an EIO as "absent": one such EIO on the Drive mount silently
# loads another tokenizer (other special tokens, other ids) or generation config (measured, transformers 5).
SNAPSHOT_MAX_BYTES = 256 * 2**20


def _local_view(folder: Path, data: dict) -> Path:
    """A temp folder on local disk for transformers to read instead of ``folder``: its small files copied (each
    checked against its SHA-256 in ``data``, the parsed COMPLETE.json), its large ones linked. The caller removes it."""
    view = Path(tempfile.mkdtemp(prefix="optimumllm-stage-"))
    try:
        for rel, info in data["files"].items():
            src, dst = folder / rel, view / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            if info["bytes"] > SNAPSHOT_MAX_BYTES:
                os.symlink(os.path.abspath(src), dst)
                continue
            sha = hashlib.sha256()
            with src.open("rb") as f, dst.open("wb") as out:
                while chunk := f.read(1 << 22):
                    sha.update(chunk)
                    out.write(chunk)
            if sha.hexdigest() != info["sha256"]:
                raise IncompleteStageError(f"{folder}: {rel} does not match its SHA-256 in {COMPLETE_MARKER} "
                                           f"(a damaged copy).{_REPAIR}")
    except BaseException:
        shutil.rmtree(view, ignore_errors=True)
        raise
    return view


# A stage folder on the Drive mount: a read that fails (EIO, a dropped mount) is tried again this many times,
# this far apart (x the attempt), before the load stops with a StorageFault (read at call time: tests scale it)
READ_RETRIES, READ_RETRY_WAIT_S = 2, 2.0


def load_stage(folder: str | os.PathLike, *, dtype=None, device_map=None, verify: bool = True,
               attn_implementation: str | None = None):
    """``(model, tokenizer)`` from a folder written by :func:`save_stage`.

    Refuses (``IncompleteStageError``) a folder without ``COMPLETE.json`` or whose files
    do not match it: missing, wrong size, or (``verify=True``) wrong SHA-256 (hashing a
    6 GB checkpoint takes ~10-30 s; ``verify=False`` checks sizes only). Also checks that
    the tokenizer follows the token contract and the embedding has a row for every id.
    transformers reads a local view of the folder (:data:`SNAPSHOT_MAX_BYTES`: its configs and tokenizer
    copied and checked, its weights linked), so that an EIO on the mount never silently drops an optional
    file. A folder that cannot be read (a dead Drive mount, EIO, also behind an error of transformers, whose
    ``os.path.isfile`` reads an EIO as "absent": "no file named model.safetensors"; any loader error is tried
    again for that reason) is read again :data:`READ_RETRIES` times, then raises
    :class:`helpers.storage_faults.StorageFault` naming the file, the errno and the remedy.
    """
    folder = Path(folder).expanduser()
    what = f"loading the stage model {folder}"
    for attempt in range(READ_RETRIES + 1):
        last, data = attempt == READ_RETRIES, None
        try:
            data = read_complete_marker(folder)
            why = stage_problem(folder, data, hashes=verify)
            if why is not None:
                raise IncompleteStageError(f"{folder}: {why}.{_REPAIR}")
            view = _local_view(folder, data)
            try:
                model, tokenizer = _from_pretrained(str(view), dtype=_resolve_dtype(dtype), device_map=device_map,
                                                    attn_implementation=attn_implementation)
            finally:
                shutil.rmtree(view, ignore_errors=True)
            model.config._name_or_path = tokenizer.name_or_path = str(folder)  # not the removed local view
            break
        except (StorageFault, IncompleteStageError) as e:
            if last or not isinstance(e, StorageFault) or e.kind not in ("dead_mount", "io_error"):
                raise
            error = e
        except Exception as e:  # re-raised unchanged unless a file of the folder cannot be read
            if isinstance(e, OSError) and fault_kind(e):
                hidden = e
            else:
                hidden = _unreadable_file(folder, [*data["files"], COMPLETE_MARKER]) if data is not None else None
            fault = _read_fault(folder, hidden, what) if hidden is not None else None
            if fault is None and last:
                raise  # its own error, every time: not a read error that a loader's check hid
            if fault is not None and last:
                raise fault from e
            error = fault or e  # nothing unreadable now: a transient read error may have hidden behind it
        print(f"WARNING: {what} failed ({error}); reading it again in {READ_RETRY_WAIT_S * (attempt + 1):g} s "
              f"({attempt + 1}/{READ_RETRIES})", file=sys.stderr)
        time.sleep(READ_RETRY_WAIT_S * (attempt + 1))
    layout = TokenLayout.from_tokenizer(tokenizer)
    rows = model.get_input_embeddings().weight.shape[0]
    if rows < layout.vocab_size:
        raise ValueError(f"{folder}: model has {rows} embedding rows, the tokenizer needs {layout.vocab_size}")
    return model, tokenizer


def count_parameters(model) -> int:
    """Unique parameters (tied weights counted once)."""
    return sum(p.numel() for p in model.parameters())


__all__ = [
    "COMPLETE_MARKER", "CHECK_TEXTS",
    "save_tiny_base", "HubAccessError", "get_hf_token", "load_base", "ExtensionReport", "extend_vocabulary",
    "IncompleteStageError", "save_stage", "read_complete_marker", "files_problem", "stage_problem", "load_stage",
    "count_parameters",
]
