"""The text frontend: normalization table, properties, tags, sentence splitting."""
import re
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers.text import (Nonverbal, Segment, UnknownTagError, estimate_seconds, normalize, normalize_transcript,
    parse_tags, prepare, split_sentences)
from helpers.tokens import EMOTIONS, NONVERBALS, nonverbal_token

torch.set_num_threads(1)

CASES_FILE = Path(__file__).with_name("text_cases.tsv")


def _load_cases():
    cases = []
    for lineno, line in enumerate(CASES_FILE.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        inp, accent, expected = line.split("\t")
        for a in (("us", "uk") if accent == "both" else (accent,)):
            cases.append(pytest.param(inp, a, expected, id=f"L{lineno}-{a}"))
    return cases


CASES = _load_cases()


def test_table_is_large_and_covers_both_accents():
    assert len(CASES) >= 150
    accents = {c.values[1] for c in CASES}
    assert accents == {"us", "uk"}


@pytest.mark.parametrize("text,accent,expected", CASES)
def test_normalize_table(text, accent, expected):
    got = normalize(text, accent=accent)
    assert got == expected
    assert normalize(got, accent=accent) == got  # idempotent on every table row too
    assert not re.search(r"\d", got)


def test_date_order_parameter_overrides_accent():
    # date_order says how to read the digits; the spoken style stays the accent's.
    assert normalize("on 3/4", accent="us", date_order="dmy") == "on April third"
    assert normalize("3/4/2021", accent="uk", date_order="mdy") == "the fourth of March twenty twenty-one"
    # Impossible in the requested order -> the other order (a 13th month does not exist).
    assert normalize("13/4/2021", accent="us") == "April thirteenth, twenty twenty-one"


def test_bad_arguments_are_loud():
    with pytest.raises(ValueError, match="accent"):
        normalize("hi", accent="au")
    with pytest.raises(ValueError, match="date_order"):
        normalize("hi", date_order="ymd")
    with pytest.raises(TypeError, match="str"):
        normalize(5)


def test_tags_pass_through_normalize():
    assert normalize("I paid $5 [laugh] OK") == "I paid five dollars [laugh] okay"
    assert normalize("ha <|laugh|> 2") == "ha <|laugh|> two"


# ----------------------------------------------------------------------------- properties
_WORDS = ["the", "cat", "Dr.", "Smith", "St.", "Main", "FBI", "NASA", "on", "at", "in", "etc.", "e.g.", "Chapter",
          "IV", "Henry", "VIII", "hello,", "world.", "It's", "U.S.", "No.", "vs", "and/or", "Mr", "OK", "I"]
_piece = st.one_of(
    st.sampled_from(_WORDS),
    st.integers(-10**7, 10**12).map(str),
    st.integers(0, 10**9).map(lambda n: f"{n:,}"),
    st.tuples(st.integers(0, 9999), st.integers(0, 999)).map(lambda t: f"{t[0]}.{t[1]}"),
    st.tuples(st.sampled_from("$£€¥"), st.integers(0, 10**6), st.integers(0, 99),
              st.sampled_from(["", "M", "bn", " million", "k"])).map(lambda t: f"{t[0]}{t[1]}.{t[2]:02d}{t[3]}"),
    st.tuples(st.integers(1, 31), st.integers(1, 31), st.integers(0, 2999)).map(lambda t: f"{t[0]}/{t[1]}/{t[2]}"),
    st.tuples(st.integers(1999, 2030), st.integers(1, 12), st.integers(1, 28)).map(lambda t: f"{t[0]}-{t[1]:02d}-{t[2]:02d}"),
    st.tuples(st.integers(0, 25), st.integers(0, 61), st.sampled_from(["", "am", " pm", " a.m.", "PM"])).map(
        lambda t: f"{t[0]}:{t[1]:02d}{t[2]}"),
    st.tuples(st.integers(-50, 5000), st.sampled_from(["%", " km", "kg", "°C", " mph", " GB", "m", " ms", "st", "x"])).map(
        lambda t: f"{t[0]}{t[1]}"),
    st.integers(1, 300).map(lambda n: f"{n}{['st', 'nd', 'rd', 'th'][n % 4]}"),
    st.integers(100, 999).map(lambda n: f"({n}) {n}-{n * 7 % 10000:04d}"),
    st.sampled_from(["&", "+", "@", "=", "#", "%", "/", "-", "(", ")", "*", "~", "<", ">", "'", '"', "½", "²"]),
    st.text(alphabet="abcXYZ0123456789.,-/:$%&@ ", max_size=8),
)
_sep = st.sampled_from([" ", " ", " ", "", ", ", ". ", "-", "/", "\n\n"])
_mixture = st.lists(st.tuples(_piece, _sep), min_size=1, max_size=12).map(lambda xs: "".join(a + b for a, b in xs))


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=_mixture, accent=st.sampled_from(["us", "uk"]))
def test_no_digits_and_idempotent(text, accent):
    once = normalize(text, accent=accent)
    assert not re.search(r"\d", once), once
    assert normalize(once, accent=accent) == once


@settings(max_examples=100, deadline=None, database=None)
@given(text=st.text(max_size=40), accent=st.sampled_from(["us", "uk"]))
def test_any_unicode_text_no_digits_and_idempotent(text, accent):
    text = re.sub(r"[\[\]<|]", " ", text)  # tag syntax is tested separately
    once = normalize(text, accent=accent)
    assert not re.search(r"[0-9]", once), once
    assert normalize(once, accent=accent) == once


# ----------------------------------------------------------------------------- tags
def test_parse_tags_segments_and_events():
    segs = parse_tags("[happy] Great news! [laugh] I can't believe it.")
    assert segs == [Segment("happy", ["Great news!", Nonverbal("laugh"), "I can't believe it."])]
    assert segs[0].text == f"Great news! {nonverbal_token('laugh')} I can't believe it."
    assert segs[0].spoken_text == "Great news! I can't believe it."
    assert segs[0].nonverbals == ["laugh"]


def test_emotion_applies_until_next_emotion():
    segs = parse_tags("Hello there. [Sad] It's over [sigh] [ANGRY] Why?")
    assert [(s.emotion, s.pieces) for s in segs] == [
        (None, ["Hello there."]),
        ("sad", ["It's over", Nonverbal("sigh")]),
        ("angry", ["Why?"]),
    ]


def test_every_contract_tag_parses_and_aliases_map():
    for e in EMOTIONS:
        assert parse_tags(f"[{e}] hi")[0].emotion == e
    for n in NONVERBALS:
        assert parse_tags(f"hi [{n}]")[0].nonverbals == [n]
        assert parse_tags(f"hi {nonverbal_token(n)}")[0].nonverbals == [n]  # token form round-trips
    assert parse_tags("ha [laughs] [ sighs ]")[0].nonverbals == ["laugh", "sigh"]
    assert parse_tags("[whispering] psst")[0].emotion == "whisper"


def test_unknown_tag_error_lists_valid_tags_or_is_spoken():
    with pytest.raises(UnknownTagError) as err:
        parse_tags("Hi [music] there")
    msg = str(err.value)
    assert "[music]" in msg and "character 3" in msg and "[happy]" in msg and "[laugh]" in msg and "speak" in msg
    segs = parse_tags("Hi [music] there", unknown="speak")
    assert segs[0].spoken_text == "Hi music there"
    with pytest.raises(ValueError, match="unknown must be"):
        parse_tags("x", unknown="drop")


def test_emotion_tag_without_text_is_an_error():
    with pytest.raises(ValueError, match=r"\[happy\].*no text"):
        parse_tags("[happy] [sad] hello")
    with pytest.raises(ValueError, match="no text"):
        parse_tags("hello [sad]")


def test_non_tag_brackets_are_not_tags():
    assert parse_tags("see [1] and [2.5]")[0].pieces == ["see [1] and [2.5]"]


def test_prepare_normalizes_segments_for_the_prompt_builder():
    segs = prepare("[happy] I won $5! [laugh] [sad] It's gone, 100%.", accent="uk")
    assert segs == [Segment("happy", ["I won five dollars!", Nonverbal("laugh")]),
                    Segment("sad", ["It's gone, one hundred per cent."])]
    assert segs[0].text == f"I won five dollars! {nonverbal_token('laugh')}"
    with pytest.raises(ValueError, match="empty"):
        prepare("   ")


def test_prepare_splits_long_segments_keeping_emotion_and_events():
    text = "[calm] " + " ".join(f"Sentence number {i} is here." for i in range(1, 30)) + " [sigh] Done."
    segs = prepare(text, max_seconds=5.0)
    assert len(segs) > 5
    assert all(s.emotion == "calm" for s in segs)
    assert all(estimate_seconds(s.text) <= 5.0 for s in segs)
    assert sum(s.nonverbals.count("sigh") for s in segs) == 1
    joined = " ".join(s.text for s in segs)
    assert joined == prepare(text)[0].text  # nothing lost or reordered


def test_normalize_transcript_shares_the_path_and_is_idempotent():
    t = "That's funny [laughs] — it cost $3.50 on 2021-03-04."
    out = normalize_transcript(t, accent="us")
    assert out == "That's funny <|laugh|> — it cost three dollars and fifty cents on March fourth, twenty twenty-one."
    assert normalize_transcript(out) == out
    assert out == " ".join(s.text for s in prepare(t))  # same words as inference
    with pytest.raises(ValueError, match="metadata"):
        normalize_transcript("[happy] hi")
    assert normalize_transcript("  ") == ""


# ----------------------------------------------------------------------------- splitting
def test_split_keeps_abbreviations_decimals_and_quotes_together():
    text = ('Dr. Smith paid 3.14 dollars. He said "Stop. Now." and left! Was it J. R. R. Tolkien? '
            'Yes, e.g. him and his friends. The end of the story is near.')
    # 3 s ~ 42 characters: room for one of these sentences per chunk, never two.
    assert split_sentences(text, max_seconds=3.0) == [
        "Dr. Smith paid 3.14 dollars.",
        'He said "Stop. Now." and left!',
        "Was it J. R. R. Tolkien?",
        "Yes, e.g. him and his friends.",
        "The end of the story is near.",
    ]


def test_split_packs_sentences_up_to_the_limit():
    text = "One two three. Four five six. Seven eight nine."
    assert split_sentences(text, max_seconds=60) == [text]
    chunks = split_sentences(text, max_seconds=2.2)  # ~30 characters per chunk
    assert chunks == ["One two three. Four five six.", "Seven eight nine."]


def test_split_long_sentence_at_clauses_then_words():
    long = ("When the rain stopped, the children ran outside, laughing and shouting, "
            "and the dogs followed them down the long muddy lane toward the river")
    chunks = split_sentences(long, max_seconds=2.5)
    assert chunks[0] == "When the rain stopped,"
    assert all(estimate_seconds(c) <= 2.5 for c in chunks)
    assert " ".join(chunks) == long
    word = "Supercalifragilisticexpialidocious" * 3
    assert split_sentences(f"{word} ok.", max_seconds=1.0) == [word, "ok."]  # only a single word may exceed


def test_split_paragraphs_and_lossless_join():
    text = "First para. Still first.\n\nSecond   para\nwraps here."
    chunks = split_sentences(text, max_seconds=100)
    assert chunks == ["First para. Still first.", "Second para wraps here."]
    with pytest.raises(ValueError, match="max_seconds"):
        split_sentences("x", max_seconds=0)


@settings(max_examples=100, deadline=None, database=None)
@given(text=_mixture, max_seconds=st.floats(0.5, 30))
def test_split_is_lossless_and_fits(text, max_seconds):
    chunks = split_sentences(text, max_seconds=max_seconds)
    flat = " ".join(" ".join(p.split()) for p in re.split(r"\n\s*\n", text) if p.strip())
    assert " ".join(chunks) == flat
    for c in chunks:
        words = c.split()
        # Over the limit only when a single word is ("Dr. Smith" counts as one: titles stay with names).
        assert c and (estimate_seconds(c) <= max_seconds or len(words) == 1
                      or (len(words) == 2 and words[0].endswith(".")))


def test_estimate_counts_digits_and_events():
    assert estimate_seconds("a" * 14) == pytest.approx(1.0)
    assert estimate_seconds("1999") == pytest.approx(20 / 14)
    assert estimate_seconds(nonverbal_token("laugh")) == pytest.approx(1.0)
