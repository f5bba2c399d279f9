"""The tiny profile's base model, built offline: a byte-level BPE tokenizer shaped like LLaMA 3's
and a 2-layer LLaMA of the real Llama 3.2 architecture, plus the small English corpus the tokenizer
learns from. :func:`helpers.models.load_base` returns these for :data:`helpers.profiles.TINY_LLAMA`,
so tests, CI and the local demo run the same code path as the hub model.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Sequence

from .profiles import ASSETS_CORPUS_DIR

BOS_TOKEN = "<|begin_of_text|>"  # LLaMA 3's BOS; the tiny tokenizer uses the same strings
EOS_TOKEN = "<|end_of_text|>"  # LLaMA 3's EOS (base model; generation stops at <|audio_end|>)

# The tiny tokenizer's BPE target size. Byte-level BPE starts from 256 byte symbols and
# merges until it reaches this size or runs out of pairs in the corpus; the built-in
# corpus alone yields a vocabulary of ~1,000-1,500 ids, the corpus CSV adds more.
# Small on purpose: the 12,288 audio tokens, not text, dominate the tiny model's
# embedding matrix, as they should for a TTS test model.
TINY_BPE_VOCAB_SIZE = 1536

# Tiny LLaMA: the real Llama 3.2 architecture (GQA, RoPE theta 500k, tied embeddings,
# SwiGLU) at a size that trains in seconds on one CPU thread.
TINY_LLAMA_CONFIG = dict(
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,  # grouped-query attention, 2 query heads per kv head (Llama 3.2: 24/8)
    intermediate_size=172,  # ~8/3 * hidden, as LLaMA's SwiGLU sizing
    max_position_embeddings=8192,
    rope_theta=500_000.0,  # Llama 3's RoPE base
    rms_norm_eps=1e-5,
    tie_word_embeddings=True,  # Llama 3.2 3B ties input and output embeddings
)

# Built-in corpus for the tiny tokenizer: common English words and everyday sentences,
# so the tokenizer never depends on the generated speech corpus being present.
_BUILTIN_WORDS = (
    "the be to of and a in that have it for not on with he as you do at this but his by "
    "from they we say her she or an will my one all would there their what so up out if "
    "about who get which go me when make can like time no just him know take people into "
    "year your good some could them see other than then now look only come its over think "
    "also back after use two how our work first well way even new want because any these "
    "give day most us is are was were been has had did said made went came took saw knew "
    "thought told found gave asked felt left called number water sound voice speech audio "
    "music word words house home world life hand part child children eye eyes woman women "
    "man men place week case point government company school family student group country "
    "problem question answer right left small large big little old young long short high "
    "low early late important public same able happy sad angry calm excited quiet loud "
    "friendly warm clear natural model train training data speaker listen read write "
    "morning evening night today tomorrow yesterday always never often sometimes please "
    "thank thanks hello goodbye yes maybe where why who whose whom very really quite"
).split()

_BUILTIN_SENTENCES: tuple[str, ...] = (
    "The quick brown fox jumps over the lazy dog.",
    "Hello, world! How are you doing today?",
    "I am fine, thank you very much for asking.",
    "Welcome to OptimumAI. This is a text to speech model.",
    "Please speak clearly and slowly into the microphone.",
    "The weather is lovely this morning, isn't it?",
    "She sells sea shells by the sea shore.",
    "We will meet at the station at half past seven.",
    "Could you tell me the way to the nearest library?",
    "My favourite colour is blue, but I also like green.",
    "He read the newspaper while drinking his coffee.",
    "They walked along the river until the sun went down.",
    "The children were laughing and playing in the garden.",
    "It was the best of times, it was the worst of times.",
    "Don't forget to bring your umbrella; it might rain later.",
    "The meeting has been moved to Thursday afternoon.",
    "I can't believe how fast this year has gone by!",
    "Turn left at the traffic lights and then go straight on.",
    "Our train leaves at 9:45 from platform number three.",
    "The price of the ticket is twelve pounds and fifty pence.",
    "Would you like a cup of tea or a glass of water?",
    "The old man told us a story about the war.",
    "Reading books is a wonderful way to learn new words.",
    "Every morning she goes for a run in the park.",
    "The doctor said that I should get more sleep.",
    "We are going on holiday to the mountains next month.",
    "That was the funniest thing I have ever heard!",
    "I'm sorry, I didn't quite catch what you said.",
    "The library is open from nine in the morning until six.",
    "Scientists have discovered a new species of frog.",
    "Please remember to switch off the lights when you leave.",
    "The cat sat quietly on the warm windowsill.",
    "He plays the piano beautifully, doesn't he?",
    "Let's have dinner together on Saturday evening.",
    "The museum has a large collection of ancient coins.",
    "She whispered something into his ear and smiled.",
    "Why are you so angry? I only asked a simple question.",
    "This is absolutely amazing, I'm so excited!",
    "I feel a little sad when summer comes to an end.",
    "Stay calm and listen carefully to the instructions.",
    "The team worked hard and finally won the championship.",
    "How much does it cost to send a letter to America?",
    "There are thirty days in September, April, June and November.",
    "The baby finally fell asleep after a long day.",
    "You should always check your work before you hand it in.",
    "The sky was full of bright stars last night.",
    "He opened the door and looked outside nervously.",
    "Our neighbours are having a party this weekend.",
    "I would like to book a table for two, please.",
    "The film starts at eight o'clock, so don't be late.",
    "Learning a new language takes time and patience.",
    "The shop on the corner sells fresh bread every day.",
    "She has been working at the hospital for ten years.",
    "What time does the next bus to London leave?",
    "The garden looks beautiful in the spring sunshine.",
    "Could you please repeat the last sentence once more?",
    "He always takes his dog for a walk after dinner.",
    "The students listened carefully to the teacher.",
    "We need to buy milk, eggs, butter and some apples.",
    "The road was closed because of the heavy snow.",
    "Thank you for calling. How may I help you?",
    "Your appointment is confirmed for Monday at 10 a.m.",
    "The new phone has a much better camera than the old one.",
    "I think we should leave now before the traffic gets worse.",
    "Music can change the way we feel about the world.",
    "They built a small wooden house near the lake.",
    "The computer restarted itself in the middle of my work.",
    "Please make sure that all the windows are closed.",
    "My brother lives in a small town in the north.",
    "The concert was cancelled because the singer was ill.",
    "Happy birthday! I hope all your wishes come true.",
    "It's getting late; we should probably head home.",
    "The river flows gently through the quiet valley.",
    "She answered every question without any hesitation.",
    "I've never seen such a beautiful sunset before.",
    "The police officer asked the driver to stop the car.",
    "Good morning, everyone, and welcome to today's lecture.",
    "The recipe calls for two cups of flour and one egg.",
    "He couldn't find his keys anywhere in the house.",
    "Voice cloning needs a clean reference recording of the speaker.",
    "Speech synthesis turns written text into natural sounding audio.",
    "The neural codec compresses sound into discrete tokens.",
    "Once upon a time, there lived a king who had three daughters.",
    "The wind howled through the trees all night long.",
    "We're proud to announce the launch of our new product.",
    "Remember: practice makes perfect.",
    "The flight to New York has been delayed by two hours.",
    "Everyone agreed that the plan was a good idea.",
    "The little girl was afraid of the dark.",
    "A journey of a thousand miles begins with a single step.",
)


def builtin_corpus() -> list[str]:
    """The tiny tokenizer's built-in English text: ~90 sentences plus ~300 common words."""
    return list(_BUILTIN_SENTENCES) + [" ".join(_BUILTIN_WORDS)]


def corpus_sentences(csv_path: str | os.PathLike | None = None) -> list[str]:
    """Sentences of the bundled speech corpus (``assets/corpus/metadata.csv``), [] if absent.

    The text column is the first of ``text``, ``normalized_text``, ``transcript``,
    ``sentence`` that the CSV has; a CSV with none of them raises ``ValueError``
    (a corpus we cannot read must not be silently ignored).
    """
    path = Path(csv_path) if csv_path is not None else ASSETS_CORPUS_DIR / "metadata.csv"
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        cols = reader.fieldnames or []
        col = next((c for c in ("text", "normalized_text", "transcript", "sentence") if c in cols), None)
        if col is None:
            raise ValueError(f"{path}: expected a text column named 'text', 'normalized_text', "
                             f"'transcript' or 'sentence'; found columns {cols}")
        return [row[col] for row in reader if row[col]]


# ----------------------------------------------------------------------------- builders
def build_tiny_tokenizer(texts: Sequence[str] | None = None, *, vocab_size: int = TINY_BPE_VOCAB_SIZE):
    """A byte-level BPE tokenizer trained offline, shaped like LLaMA 3's.

    Byte-level (every string encodes, no unknown token), BOS ``<|begin_of_text|>`` added
    by the post-processor, EOS ``<|end_of_text|>``, both appended after the BPE vocabulary
    as in LLaMA 3 (so ``len(tokenizer)`` counts them, like 128,256 for Llama 3.2).
    No pad token: the contract's ``<|pad|>`` arrives with :func:`extend_vocabulary`.

    ``texts``: training text; None = :func:`builtin_corpus` plus the bundled speech
    corpus's sentences when ``assets/corpus/metadata.csv`` exists. Training is
    deterministic: the same texts give the same vocabulary and merges.
    ``vocab_size``: BPE target (fewer ids if the text runs out of merges).
    Returns a ``transformers.PreTrainedTokenizerFast``.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    if texts is None:
        texts = builtin_corpus() + corpus_sentences()
    texts = list(texts)
    if not texts or not all(isinstance(t, str) for t in texts):
        raise ValueError("texts must be a non-empty sequence of strings")
    if vocab_size < 257:
        raise ValueError(f"vocab_size must exceed the 256 byte symbols, got {vocab_size}")

    tok = Tokenizer(models.BPE())
    # GPT-2-style byte-level split (LLaMA 3 uses a similar regex that also groups digits
    # by three; the difference does not matter for the tiny profile).
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=1, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes, even unseen ones
        special_tokens=[])
    tok.train_from_iterator(texts, trainer=trainer)
    tok.add_special_tokens([BOS_TOKEN, EOS_TOKEN])
    bos_id = tok.token_to_id(BOS_TOKEN)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS_TOKEN} $A", pair=f"{BOS_TOKEN} $A {BOS_TOKEN}:1 $B:1",
        special_tokens=[(BOS_TOKEN, bos_id)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS_TOKEN, eos_token=EOS_TOKEN)


def build_tiny_llama(vocab_size: int, seed: int = 0, *, bos_token_id: int | None = None,
                     eos_token_id: int | None = None):
    """A 2-layer LLaMA (hidden 64, 4 heads / 2 kv heads, tied embeddings), float32, sdpa.

    ``vocab_size``: embedding rows (``len(tokenizer)``). Weights are drawn from a
    generator seeded with ``seed`` without disturbing the global torch RNG.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    if vocab_size <= 0:
        raise ValueError(f"vocab_size must be positive, got {vocab_size}")
    c = dict(TINY_LLAMA_CONFIG)
    rope_theta = c.pop("rope_theta")
    config = LlamaConfig(
        vocab_size=vocab_size, bos_token_id=bos_token_id, eos_token_id=eos_token_id,
        rope_parameters={"rope_type": "default", "rope_theta": rope_theta}, **c)
    config._attn_implementation = "sdpa"
    with torch.random.fork_rng(devices=[]):  # weights by seed, global RNG untouched
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    return model.to(torch.float32).eval()


def build_tiny_base(seed: int = 0):
    """``(model, tokenizer)`` of the tiny profile, built in memory."""
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_llama(len(tokenizer), seed=seed, bos_token_id=tokenizer.bos_token_id,
                             eos_token_id=tokenizer.eos_token_id)
    return model, tokenizer
