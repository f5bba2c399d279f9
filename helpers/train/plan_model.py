"""Model arithmetic for the planner: shape, parameter counts, FLOPs per token, token budgets.

Part of :mod:`helpers.train.planner` (which re-exports every name here). Torch-free.

Attention FLOPs depend on the kernel that keeps packed examples apart
(:mod:`helpers.train.attention`): :func:`attention_pairs_per_token` counts the (query, key)
pairs a kernel computes in a packed row of ``tokens_per_step`` tokens holding
documents of ``mean_doc_tokens``; :func:`attention_flops_per_token` turns them into
FLOPs of Llama's architecture (``4 · q_dim`` FLOPs per pair and layer forward: QKᵀ and
PV, a multiply-add each). For Llama-3.2-3B (28 layers, q_dim 3,072) at an 8,192-token
row of 1,024-token documents, training (forward + backward ≈ 3.5 × forward with the
recomputed softmax): SDPA with its dense block-diagonal mask computes the whole
8K × 8K square (~9.9 GFLOP/token), FlexAttention the 128-token blocks on each
document's causal diagonal (~0.7), flash-attn varlen each causal triangle (~0.6),
against ~19.5 GFLOP/token (6N) for the rest of the model.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from ..tokens import AUDIO_TOKENS_PER_SECOND, TokenLayout

GIB = 1 << 30

# ============================================================================ model shape


@dataclass(frozen=True)
class ModelShape:
    """The dimensions of a LLaMA-family decoder that memory and FLOPs depend on."""

    hidden: int  # model width h
    layers: int  # decoder layers L
    heads: int  # query heads
    kv_heads: int  # key/value heads (GQA); == heads for plain multi-head attention
    intermediate: int  # SwiGLU MLP width I
    vocab: int  # embedding rows V (after padding to a multiple of 64 for the extended model)
    tied: bool = True  # LM head shares the embedding matrix (Llama 3.2 1B/3B do)
    head_dim: int | None = None  # None: hidden // heads

    def __post_init__(self):
        for name in ("hidden", "layers", "heads", "kv_heads", "intermediate", "vocab"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"ModelShape.{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.heads % self.kv_heads:
            raise ValueError(f"heads ({self.heads}) must be a multiple of kv_heads ({self.kv_heads}) for GQA")
        if self.head_dim is None:
            if self.hidden % self.heads:
                raise ValueError(f"hidden ({self.hidden}) is not divisible by heads ({self.heads}); give head_dim")
            object.__setattr__(self, "head_dim", self.hidden // self.heads)

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    # Parameter counts (no biases: LLaMA has none).
    def embedding_params(self) -> int:
        return self.vocab * self.hidden

    def attention_params_per_layer(self) -> int:
        """q: h×(heads·d), k and v: h×(kv_heads·d) each (GQA), o: (heads·d)×h."""
        return 2 * self.hidden * self.q_dim + 2 * self.hidden * self.kv_dim

    def mlp_params_per_layer(self) -> int:
        """SwiGLU: gate and up h×I, down I×h."""
        return 3 * self.hidden * self.intermediate

    def layer_params(self) -> int:
        """Attention + MLP + two RMSNorm weight vectors (h each)."""
        return self.attention_params_per_layer() + self.mlp_params_per_layer() + 2 * self.hidden

    def param_count(self) -> int:
        """Embeddings (+ a separate LM head when untied) + L layers + the final RMSNorm."""
        emb = self.embedding_params() * (1 if self.tied else 2)
        return emb + self.layers * self.layer_params() + self.hidden

    def with_vocab(self, vocab: int) -> "ModelShape":
        return replace(self, vocab=int(vocab))

    @classmethod
    def from_config(cls, config, vocab: int | None = None) -> "ModelShape":
        """Read a ``transformers`` LLaMA config (any object with the same attribute names).

        ``vocab`` overrides ``config.vocab_size`` (e.g. the padded extended size
        before the embeddings have been resized).
        """
        missing = [a for a in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                               "vocab_size") if getattr(config, a, None) is None]
        if missing:
            raise ValueError(f"config {type(config).__name__} lacks {missing}; expected a LLaMA-style config")
        heads = int(config.num_attention_heads)
        return cls(
            hidden=int(config.hidden_size),
            layers=int(config.num_hidden_layers),
            heads=heads,
            kv_heads=int(getattr(config, "num_key_value_heads", None) or heads),
            intermediate=int(config.intermediate_size),
            vocab=int(vocab if vocab is not None else config.vocab_size),
            tied=bool(getattr(config, "tie_word_embeddings", False)),
            head_dim=getattr(config, "head_dim", None),
        )


# meta-llama/Llama-3.2-3B config.json: hidden 3072, 28 layers, 24 heads, 8 KV heads,
# head_dim 128, intermediate 8192, vocab 128,256, tied embeddings -> 3,212,749,824
# parameters. (The seed's architecture figure says "36 layers"; that is wrong for
# Llama 3.2 3B — 36 layers would be ~4.0 B parameters. We follow the config.)
LLAMA_3_2_3B = ModelShape(hidden=3072, layers=28, heads=24, kv_heads=8, intermediate=8192, vocab=128_256, tied=True)
# The same model after Stage 1: base vocabulary + the token contract, padded to a multiple of 64.
LLAMA_3_2_3B_AUDIO = LLAMA_3_2_3B.with_vocab(TokenLayout(LLAMA_3_2_3B.vocab).padded_vocab_size())

def model_flops_per_token(shape: ModelShape, mean_doc_tokens: int) -> float:
    """``6N + 12·L·q_dim·S`` (training FLOPs per token, PaLM's MFU convention).

    6N: forward 2N (one multiply-add per parameter, the tied LM head included),
    backward 4N. Attention scores and values add ``2·2·q_dim·S`` forward per layer
    (×3 for training) where S is the attention span: with packed documents and
    per-document masking it is the mean document length, not the pack length.
    """
    return 6.0 * shape.param_count() + 12.0 * shape.layers * shape.q_dim * mean_doc_tokens


# ============================================================================ attention cost per kernel

ATTENTION_KERNELS = ("sdpa", "flex_attention", "flash_attention_2")  # = helpers.train.attention.KERNELS (a test checks)
FLEX_BLOCK = 128  # FlexAttention's BlockMask granularity (torch's _DEFAULT_SPARSE_BLOCK_SIZE)
# Training attention work / forward attention work: backward computes dQ, dK, dV and recomputes
# the probabilities (P) from the saved logsumexp -> ~2.5 × forward (FlashAttention-2 paper, §3.1).
ATTENTION_TRAIN_FACTOR = 3.5


def attention_pairs(doc_lengths, kernel: str, block: int = FLEX_BLOCK) -> int:
    """(query, key) pairs ``kernel`` computes for one packed row of documents of ``doc_lengths`` tokens.

    ``sdpa``: the dense (N, N) mask disables the causal skip -> N² (N = sum of lengths).
    ``flash_attention_2``: each document's causal triangle, ``n(n+1)/2``.
    ``flex_attention``: every ``block`` × ``block`` tile holding at least one allowed pair
    (the tiles on and below each document's diagonal), counted exactly.
    """
    lens = [int(x) for x in doc_lengths]
    if not lens or min(lens) <= 0:
        raise ValueError(f"doc_lengths must be positive token counts, got {lens[:5]}")
    if kernel in ("sdpa", "eager"):
        return sum(lens) ** 2
    if kernel == "flash_attention_2":
        return sum(n * (n + 1) // 2 for n in lens)
    if kernel == "flex_attention":
        tiles: set[tuple[int, int]] = set()
        start = 0
        for n in lens:
            b0, b1 = start // block, (start + n - 1) // block
            tiles.update((qb, kb) for qb in range(b0, b1 + 1) for kb in range(b0, qb + 1))
            start += n
        return len(tiles) * block * block
    raise ValueError(f"unknown attention kernel {kernel!r}; expected one of {ATTENTION_KERNELS}")


def attention_pairs_per_token(kernel: str, tokens_per_step: int, mean_doc_tokens: int) -> float:
    """Pairs per token of a row of ``tokens_per_step`` tokens cut into documents of ``mean_doc_tokens``
    (the last one shorter), under ``kernel`` (:func:`attention_pairs`)."""
    if tokens_per_step < 1 or mean_doc_tokens < 1:
        raise ValueError(f"tokens_per_step and mean_doc_tokens must be >= 1, got {tokens_per_step}, {mean_doc_tokens}")
    d = min(mean_doc_tokens, tokens_per_step)
    lens = [d] * (tokens_per_step // d) + ([tokens_per_step % d] if tokens_per_step % d else [])
    return attention_pairs(lens, kernel) / tokens_per_step


def attention_flops_per_token(shape: ModelShape, kernel: str, tokens_per_step: int, mean_doc_tokens: int,
                              *, training: bool = True) -> float:
    """Attention-score FLOPs per token (all layers) under ``kernel``: ``pairs · 4 · q_dim · L``,
    × :data:`ATTENTION_TRAIN_FACTOR` for a training step (forward + backward)."""
    fwd = attention_pairs_per_token(kernel, tokens_per_step, mean_doc_tokens) * 4.0 * shape.q_dim * shape.layers
    return fwd * (ATTENTION_TRAIN_FACTOR if training else 1.0)


def attention_cost_table(shape: ModelShape, tokens_per_step: int, mean_doc_tokens: int) -> list[dict]:
    """One row per kernel: attention GFLOP/token for training, and its share of a step's model FLOPs."""
    rest = 6.0 * shape.param_count()
    rows = []
    for k in ATTENTION_KERNELS:
        a = attention_flops_per_token(shape, k, tokens_per_step, mean_doc_tokens)
        rows.append({"kernel": k, "attention_gflop_per_token": round(a / 1e9, 3),
                     "rest_of_model_gflop_per_token": round(rest / 1e9, 3), "attention_share": round(a / (a + rest), 3)})
    return rows

# ============================================================================ token budget of a stage



def stage_tokens(audio_hours: float, *, epochs: float = 1.0, text_tokens_per_second: float = 3.5,
                 mean_utterance_s: float = 8.0, tokens_per_utterance_overhead: int = 12) -> int:
    """Training tokens of a stage: audio tokens + transcript + prompt structure.

    ``audio_hours · 3600 · (82.03 audio tokens/s + text_tokens_per_second)`` plus
    ``tokens_per_utterance_overhead`` (bos, text/speaker/audio markers, emotion,
    voice) per utterance of ``mean_utterance_s``. English read speech is ~2.5
    words/s at ~1.4 LLaMA tokens/word -> ~3.5 text tokens/s. Stage 2 (1,000 h):
    ~310 M tokens per epoch.
    """
    if audio_hours <= 0 or epochs <= 0 or mean_utterance_s <= 0:
        raise ValueError(f"audio_hours, epochs and mean_utterance_s must be positive, got "
                         f"{audio_hours}, {epochs}, {mean_utterance_s}")
    seconds = audio_hours * 3600.0
    per_epoch = seconds * (AUDIO_TOKENS_PER_SECOND + text_tokens_per_second) \
        + seconds / mean_utterance_s * tokens_per_utterance_overhead
    return int(round(per_epoch * epochs))


STAGE2_AUDIO_HOURS = 1000.0  # seed §11: Stage 2 trains on 1,000 h

