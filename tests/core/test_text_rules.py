"""Rule families of the text frontend, each in both accents, and the speakable-text guard."""

import pytest
from text_assert import both_accents as _both

from helpers.text import (Nonverbal, SpokenText, UnspeakableTextError, normalize, prepare, normalize_transcript, speakable,
                          spoken_length)




# ----------------------------------------------------------------------------- guard
@pytest.mark.parametrize("text", ["\x00", "\x00\x00\x00", "😀", "😀👍🏽🇬🇧", "\u200b\u200c\u200d\ufeff\u2060",
                                  "", "   ", "...", "\x1b[31m\x1b[0m", "👨\u200d👩\u200d👧"])
def test_guard_refuses_text_with_nothing_speakable(text):
    with pytest.raises(UnspeakableTextError, match="nothing speakable") as err:
        speakable(text)
    assert repr(text[:10])[:8] in str(err.value)
    assert isinstance(err.value, ValueError)


def test_guard_message_quotes_a_truncated_repr():
    with pytest.raises(UnspeakableTextError) as err:
        speakable("\u200b" * 500)
    msg = str(err.value)
    assert "500 characters" in msg and len(msg) < 400 and "ZERO WIDTH SPACE" in msg


@pytest.mark.parametrize("accent", ["us", "uk"])
def test_guard_removes_controls_zero_width_and_emoji(accent):
    s = speakable("\x1b[31mHi\x1b[0m t\u200bhe\u00adre\x00 \U0001F600 I have 3\ufe0f\u20e3 cats\x07", accent=accent)
    assert s == SpokenText("Hi there I have three cats", s.removed)
    names = dict(s.removed)
    assert names["ANSI escape sequence"] == 2
    assert names["U+200B ZERO WIDTH SPACE"] == 1 and names["U+00AD SOFT HYPHEN"] == 1
    assert names["U+0000 NUL (control)"] == 1 and names["U+0007 BEL (control)"] == 1
    assert names["U+1F600 GRINNING FACE"] == 1
    assert len(s) == len(s.text) == spoken_length("\x1b[31mHi\x1b[0m there I have 3 cats", accent=accent)


def test_guard_runs_on_every_entry_point_and_keeps_whitespace():
    assert normalize("a\x00b\tc\nd\u200d") == "ab c d"
    assert normalize("\x1b[31m5") == "five"  # the escape's parameters are not read as a number
    assert prepare("hi\u200b [laugh]\x00")[0].text == "hi <|laugh|>"
    assert normalize_transcript("ok\ufeff 2\x7f") == "ok two"
    assert speakable("[laugh]").text == "[laugh]"  # a non-verbal event is something to render
    assert speakable("I ❤ NY ©").text == "I N Y copyright"  # symbols with a reading stay
    assert speakable("plain").removed == ()


def test_spoken_length_is_the_normalized_length():
    assert spoken_length("$5") == len("five dollars")
    assert spoken_length("$1,000,000", accent="uk") == len("one million dollars")


# ----------------------------------------------------------------------------- rule families, both accents
_UK_124 = ("one hundred and twenty-four quintillion four hundred and forty-four quadrillion two hundred and thirty-four "
           "trillion eight hundred and fifty-four billion eight hundred and twenty-three million eight hundred and "
           "thirty-four thousand five hundred and fifty-three")
# (input, US reading, UK reading or None when the same). Each family's rules generalise;
# these are examples, not the rules' lists.
RULES = {
    "dates": [
        ("july 25 2012", "July twenty-fifth, twenty twelve", "July the twenty-fifth twenty twelve"),
        ("JAN. 15 2020", "January fifteenth, twenty twenty", "January the fifteenth twenty twenty"),
        ("Jan-15-2020", "January fifteenth, twenty twenty", "January the fifteenth twenty twenty"),
        ("SEPT. 15", "September fifteenth", "September the fifteenth"),
        ("25 jul 2012", "the twenty-fifth of July twenty twelve", None),
        ("17 may 2010", "the seventeenth of May twenty ten", None),
        ("you may 5 times", "you may five times", None),  # lower-case "may" before a number is the verb
        ("The 5th of November", "The fifth of November", None),  # the article is not doubled
        ("the 26th May", "the twenty-sixth of May", None),
        ("2016/07/03", "July third, twenty sixteen", "the third of July twenty sixteen"),
        ("2016.07.03", "July third, twenty sixteen", "the third of July twenty sixteen"),
        ("01.10.2010", "January tenth, twenty ten", "the first of October twenty ten"),  # UK: day first
        ("340 A.D", "three forty A D", None),
        ("in 500 BC", "in five hundred B C", None),
        ("We grew in 2Q22", "We grew in the second quarter of twenty-two", None),
        ("the 1980 s", "the nineteen eighties", None),
        ("JAN.", "January.", None),
        ("for Tu (2/22) at 5 pm.", "for Tuesday (February twenty-second) at five P M.",
         "for Tuesday (the twenty-second of February) at five P M."),  # a weekday abbreviation before a date
        ("Sat. 3/4", "Saturday March fourth", "Saturday the third of April"),
        ("We 3/4 agree", "We three quarters agree", None),  # "We" is the pronoun
    ],
    "times": [
        ("10:00 p.m. e.s.t", "ten P M E S T", None),
        ("1:59 p.m.est", "one fifty-nine P M E S T", None),
        ("11:30EST", "eleven thirty E S T", None),
        ("at 1.59 p.m. today", "at one fifty-nine P M today", None),
        ("2.30 a.m.", "two thirty A M.", None),
        ("00:05am", "twelve oh five A M", None),
        ("2pm-5pm", "two P M to five P M", None),
        ("4:00 am - 8:12 pm", "four A M to eight twelve P M", None),
        ("10:30:15", "ten thirty and fifteen seconds", None),
        ("a ratio of 2:8", "a ratio of two to eight", None),
    ],
    "telephone and serials": [
        ("(123)-123-5678", "one two three, one two three, five six seven eight", None),
        ("+1 (123)-123-5678", "plus one, one two three, one two three, five six seven eight", None),
        ("123-123-5678-1111", "one two three, one two three, five six seven eight, one one one one", None),
        ("my ssn is 111-11-1111", "my ssn is one one one, one one, one one one one", None),
        ("IP 123.123.0.40", "IP one two three dot one two three dot zero dot four zero",
         "IP one two three dot one two three dot oh dot four oh"),
        ("card ending in 8876", "card ending in eight eight seven six", None),
        ("your PIN is 4921", "your PIN is four nine two one", None),
        ("b-c-1-5-b-s-b", "b-c one-five-b-s-b", None),  # a serial's hyphens are not ranges
    ],
    "measures and fractions": [
        ("4 1/2 lbs", "four and a half pounds", None),
        ("3/4 mi", "three quarters of a mile", None),
        ("12/kg", "twelve per kilogram", None),
        ("5 km/h", "five kilometers per hour", "five kilometres per hour"),
        ("12kg/kg", "twelve kilograms per kilogram", None),
        ("9 l/m", "nine liters per meter", "nine litres per metre"),
        ("100 million kg", "one hundred million kilograms", None),
        ("12KG", "twelve kilograms", None),
        ("3 mbps", "three megabits per second", None),
        ("41,459.00 km³", "forty-one thousand four hundred fifty-nine point zero zero cubic kilometers",
         "forty-one thousand four hundred and fifty-nine point nought nought cubic kilometres"),
        ("The box was 25 x 7 m.", "The box was twenty-five by seven meters.", "The box was twenty-five by seven metres."),
        ("45º&C", "forty-five degrees and C", None),
        ("1/4th", "one quarter", None),
        ("a 12\" pipe", "a twelve inches pipe", None),
        ("2*8", "two times eight", None),
        ("4.4x faster", "four point four x faster", None),  # the letter of a multiplier is said
        ("a 2x zoom, 3× more", "a two x zoom, three times more", None),  # the sign is "times"
    ],
    "money": [
        ("₩460 billion", "four hundred sixty billion won", "four hundred and sixty billion won"),
        ("US$76.3 trillion", "seventy-six point three trillion U S dollars", None),
        ("A$5 or C$10.50", "five Australian dollars or ten Canadian dollars and fifty cents", None),
        ("$2.000", "two dollars", None),
        ("$20.500", "twenty dollars and fifty cents", None),
        ("¥30 b", "thirty billion yen", None),
        ("$20/mo", "twenty dollars per month", None),
        ("£10/wk", "ten pounds per week", None),
        ("$0.5/hr", "fifty cents per hour", None),
        ("$ and 5%", "dollar and five percent", "dollar and five per cent"),
    ],
    "ranges": [
        ("1961-1965", "nineteen sixty-one to nineteen sixty-five", None),
        ("1960s-80s", "nineteen sixties to eighties", None),
        ("1234-123kg", "one thousand two hundred thirty-four to one hundred twenty-three kilograms",
         "one thousand two hundred and thirty-four to one hundred and twenty-three kilograms"),
        ("2-5lb", "two to five pounds", None),
        ("$250-$300", "two hundred fifty dollars to three hundred dollars",
         "two hundred and fifty dollars to three hundred dollars"),
        ("2%-10%", "two percent to ten percent", "two per cent to ten per cent"),
        ("5-3-Ws", "five-three-Ws", None),
        ("1-2=5", "one minus two equals five", None),
        ("978-0", "nine hundred seventy-eight zero", "nine hundred and seventy-eight zero"),  # falling: not a range
        ("won 3-2", "won three to two", None),  # clock-size numbers (open 10-6) stay a range
        ("won 21-14", "won twenty-one to fourteen", None),  # a score: same-length falling pair stays "to"
        ("the 2019-20 season", "the twenty nineteen to twenty season", None),  # an abbreviated end is a range
    ],
    "electronic": [
        ("a-1.b3_c&-d@gma4i-l.com", "a dash one dot b three underscore c ampersand dash d at gma four i dash l dot com",
         None),
        ("sdf@gmail.com/123-sm", "sdf at gmail dot com slash one two three dash sm", None),
        ("file:///c/docs/intro.html", "file colon slash slash slash c slash docs slash intro dot html", None),
        ("open localhost:8080/api", "open localhost colon eighty eighty slash api", None),  # #34: a port is a number
        ("api.example.org:443/v1", "api dot example dot org colon four forty-three slash v one", None),
        ("see test.abc", "see test dot abc", None),
        ("https://developer.nvidia.com/cv-cuda", "H T T P S colon slash slash developer dot nvidia dot com slash cv "
         "dash cuda", None),
        ("http://www.example.com/a", "H T T P colon slash slash W W W dot example dot com slash a", None),  # #34: before www. too
        ("file:///photos/image.jpg", "file colon slash slash slash photos slash image dot jpeg", None),
        ("see image.jpg", "see image dot jpeg", None),
    ],
    "addresses and St.": [
        ("12 High St. Edinburgh", "twelve High Street Edinburgh", None),
        ("St. Paul", "Saint Paul", None),
        ("Nancy lived at 1428 Elm St. It was late.", "Nancy lived at fourteen twenty-eight Elm Street. It was late.",
         None),
        ("708 N 1st St, San City", "seven zero eight North first Street, San City",
         "seven oh eight North first Street, San City"),
        ("2788 San Tomas Expy, Santa Clara, CA 95051",
         "twenty-seven eighty-eight San Tomas Expressway, Santa Clara, California nine five zero five one",
         "twenty-seven eighty-eight San Tomas Expressway, Santa Clara, California nine five oh five one"),
        ("1211 E Arques Ave", "twelve eleven East Arques Avenue", None),
    ],
    "numbers in context": [
        ("I bought 1035 cans", "I bought one thousand thirty-five cans", "I bought one thousand and thirty-five cans"),
        ("over 1500 people", "over one thousand five hundred people", "over one thousand five hundred people"),
        ("the 1990 elections", "the nineteen ninety elections", None),
        ("since 2010 prices rose", "since twenty ten prices rose", None),
        ("1th and 12nd", "one th and twelve nd", None),  # a suffix that does not agree is not an ordinal
        ("124,444,234,854,823,834,553",
         "one hundred twenty-four quintillion four hundred forty-four quadrillion two hundred thirty-four trillion eight "
         "hundred fifty-four billion eight hundred twenty-three million eight hundred thirty-four thousand five hundred "
         "fifty-three", _UK_124),
        ("114...48", "one hundred fourteen...forty-eight", "one hundred and fourteen...forty-eight"),
        ("111st", "one one one st", "one one one st"),  # a code: digit by digit from three digits
        ("2,500 fans", "twenty-five hundred fans", "two thousand five hundred fans"),  # US round hundreds
        ("$2,000 or 12,500", "two thousand dollars or twelve thousand five hundred",
         "two thousand dollars or twelve thousand five hundred"),
        ("the A321 and RTX4090", "the A three twenty-one and R T X forty ninety", None),  # model numbers in pairs
        ("X100 or Windows2000", "X one hundred or Windows two thousand", None),
        ("two 80's and the 1980's", "two eighty's and the nineteen eighties", None),
    ],
    "roman numerals, abbreviations, symbols": [
        ("Henry VIII", "Henry the Eighth", None),
        ("Francis I--test", "Francis the First--test", None),
        ("PART XL", "PART forty", None),
        ("WWII ended", "World War two ended", None),
        ("Maj. Tom", "Major Tom", None),
        ("pens, inks, &c. The end", "pens, inks, et cetera. The end", None),
        ("a 401(k) plan", "a four oh one K plan", None),
        ("go <noise/> home", "go home", None),  # markup has no reading
        ("go <cough/> home", "go [cough] home", None),  # markup naming a non-verbal event becomes its tag
        ("<breathing />", "[breathing]", None),
        ("test$", "test dollar", None),
        ("31/31/100", "thirty-one slash thirty-one slash one hundred", None),
    ],
}
_RULE_CASES = [pytest.param(t, us, uk, id=f"{fam}:{t}") for fam, rows in RULES.items() for t, us, uk in rows]


@pytest.mark.parametrize("text,us,uk", _RULE_CASES)
def test_rule_families_in_both_accents(text, us, uk):
    _both(text, us, uk)


def test_markup_events_reach_the_prompt_as_events():
    for accent in ("us", "uk"):
        segs = prepare("go <cough/> home, <breathing/> <noise/> 5", accent=accent)
        assert segs[0].pieces == ["go", Nonverbal("cough"), "home,", Nonverbal("breath"), "five"]
        assert normalize_transcript("ok <sighs/>", accent=accent) == "ok <|sigh|>"
