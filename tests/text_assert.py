"""One check for a text-frontend case, shared by tests/core/test_text_rules.py and test_text_families.py."""
import re

from helpers.text import normalize


def both_accents(text, us, uk=None):
    """``text`` reads ``us`` in US mode and ``uk`` (None: the same) in UK mode, leaves no digit,
    and normalising the reading again changes nothing (idempotent)."""
    assert normalize(text, accent="us") == us
    assert normalize(text, accent="uk") == (us if uk is None else uk)
    for accent in ("us", "uk"):
        once = normalize(text, accent=accent)
        assert not re.search(r"\d", once) and normalize(once, accent=accent) == once
