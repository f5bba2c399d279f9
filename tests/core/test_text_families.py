"""Issue #34: the readings adopted from NeMo, the two bugs, and the rule families that failed
outside NeMo's suite - each case in US and UK mode (``uk`` None: the same words), idempotent,
with no digit left."""
import re

import pytest
from text_assert import both_accents as _both
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers.text import normalize
from helpers.text.words import split_words




FAMILIES = {
    "adopted from NeMo (#34 decision)": [
        ("1998/2/30", "February thirtieth, nineteen ninety-eight", "the thirtieth of February nineteen ninety-eight"),
        ("on 2021/3/4", "on March fourth, twenty twenty-one", "on the fourth of March twenty twenty-one"),
        ("MIG-25/235212-asdg", "MIG twenty-five slash two three five two one two asdg", None),
        ("123/261788/2021", "one hundred twenty-three slash two six one seven eight eight slash two thousand "
         "twenty-one", "one hundred and twenty-three slash two six one seven eight eight slash two thousand and "
         "twenty-one"),
        ("12639/12640", "twelve thousand six hundred thirty-nine twelve thousand six hundred fortieths",
         "twelve thousand six hundred and thirty-nine twelve thousand six hundred and fortieths"),  # one slash: a fraction
        ("1-8090", "one eight thousand ninety", "one eight thousand and ninety"),  # a code, not a range
        ("1-1000", "one to one thousand", None),  # a round upper bound stays a range
        ("http://www.nvidia.com/rtx-6000", "H T T P colon slash slash W W W dot nvidia dot com slash rtx dash six "
         "thousand", None),
        ("sdf@gmail.com/123-sm", "sdf at gmail dot com slash one two three dash sm", None),  # a code: digits
        ("enterpriseservices@nvidia.com", "enterprise services at nvidia dot com", None),
        ("rtxprohelp@exchange.nvidia.com", "R T X pro help at exchange dot nvidia dot com", None),
        ("mail salesteam@acme.com.", "mail sales team at acme dot com.", None),
        ("my email is myemail@gmail.com", "my email is myemail at gmail dot com", None),  # no two-letter pieces
        ("info@acme.com", "info at acme dot com", None),
    ],
    "bugs (#34)": [
        ("Sam II", "Sam the Second", None),
        ("[HH AH0 L OW1]", "(H H AH zero L OW one)", None),  # no number before L: a letter, not liters
        ("2 L of water", "two liters of water", "two litres of water"),
    ],
    "roman numerals": [
        ("the XIV Corps", "the fourteenth Corps", None),
        ("the XXth century", "the twentieth century", None),
        ("the IInd battalion", "the second battalion", None),
        ("a XXIst-century idea", "a twenty-first-century idea", None),
        ("the Xth legion", "the tenth legion", None),
        ("the IXst", "the IXst", None),  # a suffix that does not agree: no ordinal
        ("Sam I.", "Sam the First.", None),
        ("Sam I am", "Sam I am", None),  # the pronoun
        ("King Olafur III ruled", "King Olafur the Third ruled", None),  # any capitalised name
        ("Louis XIV.", "Louis the Fourteenth.", None),
        ("John Smith III, Esq", "John Smith the Third, Esq", None),
        ("Louis CXIV", "Louis the One hundred fourteenth", "Louis the One hundred and fourteenth"),
        ("World War II-era homes", "World War two-era homes", None),
        ("Chapters I-III", "Chapters one to three", None),
        ("Type II diabetes", "Type two diabetes", None),
        ("Malcolm X spoke", "Malcolm X spoke", None),
        ("the CD and the MIX", "the C D and the MIX", None),
        ("size XL", "size X L", None),
        ("Vitamin C", "Vitamin C", None),
        ("I saw it. Then I left", "I saw it. Then I left", None),
        ("Curtin, Philip D. (1989)", "Curtin, Philip D. (nineteen eighty-nine)", None),  # an initial
        ("John C. Calhoun", "John C. Calhoun", None),
        ("Henry V", "Henry the Fifth", None),
        ("vol XV", "vol fifteen", None),  # lower-case keywords
        ("class V cells", "class five cells", None),
        ("the part I liked", "the part I liked", None),
        ("La II Republica", "La II Republica", None),  # an article, not a name
        ("Henry Ford II", "Henry Ford the Second", None),
        ("Henry IBM", "Henry I B M", None),  # a spelled acronym, not "Henry the First B M" on a second pass
        ("Tag XIV XIV", "Tag the Fourteenth XIV", None),  # "Fourteenth" (our output) is no name
    ],
    "found by the Google suite": [
        ("4,507.4/km²", "four thousand five hundred seven point four per square kilometer",
         "four thousand five hundred and seven point four per square kilometre"),
        ("(280.0/km2)", "(two hundred eighty point zero per square kilometer)",
         "(two hundred and eighty point nought per square kilometre)"),
        ("0.5 g/cm3", "zero point five grams per cubic centimeter", "nought point five grams per cubic centimetre"),
        ("Δ (x)", "delta (x)", None),
        ("an α-helix", "an alpha-helix", None),
        ("Δx", "delta x", None),
        ("αβγ", "αβγ", None),  # a Greek word is left to the model
        ("Chan, CT; Sheng, P", "Chan, C T; Sheng, P", None),  # an author list, not Connecticut
        ("ISBN 0-486-43365-X.", "I S B N zero, four eight six, four three three six five, X.",
         "I S B N oh, four eight six, four three three six five, X."),
        ("ISBN 978-0816648368", "I S B N nine seven eight, zero eight one six six four eight three six eight",
         "I S B N nine seven eight, oh eight one six six four eight three six eight"),
        ("at 295 ch.2", "at two hundred ninety-five ch point two", "at two hundred and ninety-five ch point two"),
        ("(Jan 1977)", "(January nineteen seventy-seven)", None),
        ("vol 64, no", "volume sixty-four, no", None),
        ("a maximum of 2 mA", "a maximum of two milliamps", None),
        ("30 psi", "thirty pounds per square inch", None),
        ("173 hp", "one hundred seventy-three horsepower", "one hundred and seventy-three horsepower"),
        ("SEPT 2020", "September twenty twenty", None),
        ("William S., jr (1901)", "William S., junior (nineteen oh one)", None),
        ("ISSN 0891-1851", "I S S N zero eight nine one, one eight five one",
         "I S S N oh eight nine one, one eight five one"),
    ],
    "abbreviations in any case": [
        ("E.G. this", "For example this", None),
        ("cats, eg, lions", "cats, for example, lions", None),
        ("Eg this", "For example this", None),
        ("EG 42", "EG forty-two", None),  # no period and no lower-case word after: a code
        ("I.E. that", "That is that", None),
        ("small, ie, tiny", "small, that is, tiny", None),
        ("pens, ETC.", "pens, et cetera.", None),
        ("pens etc and inks", "pens et cetera and inks", None),
        ("due SEPT 5", "due September fifth", "due September the fifth"),
        ("in SEPT.", "in September.", None),
        ("feb 5 2020", "February fifth, twenty twenty", "February the fifth twenty twenty"),
        ("dr. jones", "doctor jones", None),
        ("ask dr Evans", "ask doctor Evans", None),
        ("mr MacMillan", "mister MacMillan", None),
        ("st Kilda", "saint Kilda", None),
        ("Main st. and", "Main st. and", None),  # before a lower-case word: not a title
        ("ms word", "ms word", None),
        ("Acme, Ltd", "Acme, Limited", None),
        ("Martin Luther King Jr", "Martin Luther King Junior", None),
        ("No 10 Downing Street", "Number ten Downing Street", None),
        ("NO. 7", "Number seven", None),
        ("no 5 year olds", "no five year olds", None),
        ("Austin, TX", "Austin, Texas", None),
        ("Austin, TX 78701", "Austin, Texas seven eight seven zero one", "Austin, Texas seven eight seven oh one"),
        ("in Reno, NV, today", "in Reno, Nevada, today", None),
        ("Thanks, OK", "Thanks, okay", None),  # OK, HI, OR, IN, ME are left
        ("Jane Doe, MD, said", "Jane Doe, M D, said", None),  # a degree, not Maryland
        ("56dr Xyz", "fifty-six doctor Xyz", None),
    ],
    "social text": [
        ("#hashTag", "hashtag hash Tag", None),
        ("love it #ThrowbackThursday", "love it hashtag Throwback Thursday", None),
        ("#blacklivesmatter", "hashtag black lives matter", None),
        ("#tbt", "hashtag tbt", None),
        ("#COVID19 cases", "hashtag COVID nineteen cases", None),
        ("#1 fan", "number one fan", None),  # a number sign, not a tag
        ("#mytext#", "hash mytext hash", None),
        ("thanks @JaneDoe", "thanks at Jane Doe", None),
        ("@john_smith", "at john smith", None),
        ("@name", "at name", None),
        ("mail me@x.com", "mail me at x dot com", None),
    ],
    "numbers": [
        ("5*3", "five times three", None),
        ("press * to confirm", "press star to confirm", None),
        ("dial *69", "dial star sixty-nine", None),
        ("*Note*", "Note", None),  # emphasis: no reading
        ("1.2e-5", "one point two times ten to the minus five", None),
        ("3.5E+8", "three point five times ten to the eight", None),
        ("6.02e23 atoms", "six point zero two times ten to the twenty-three atoms",
         "six point nought two times ten to the twenty-three atoms"),
        ("2 1/2 cups", "two and a half cups", None),
        ("4 3/4", "four and three quarters", None),
        ("the 1,000th visitor", "the one thousandth visitor", None),
        ("the 2,001st", "the two thousand first", "the two thousand and first"),
        ("5k", "five thousand", None),
        ("10k steps", "ten thousand steps", None),
        ("a 5K run", "a five K run", None),
        ("$5k", "five thousand dollars", None),
        ("the 1990s", "the nineteen nineties", None),
        ("the '90s", "the nineties", None),
    ],
    "day ranges": [
        ("5–7 June", "the fifth to the seventh of June", None),
        ("June 5–7", "June fifth to seventh", "June the fifth to the seventh"),
        ("June 5-7, 2020", "June fifth to seventh, twenty twenty", "June the fifth to the seventh, twenty twenty"),
        ("5th-7th of June 2020", "the fifth to the seventh of June twenty twenty", None),
        ("Jun. 30-31", "June thirty to thirty-one", None),  # June has no 31st: not two days
    ],
    "ranges and weekdays": [
        ("Mon.-Fri.", "Monday to Friday.", None),
        ("open Mon.–Fri. from 9", "open Monday to Friday from nine", None),
        ("Mon.-Fri.XXth", "Monday to Friday twentieth", None),  # glued after the period: found by the mixture test
        ("mon - fri", "Monday to Friday", None),
        ("open Mon-Sat 9-5", "open Monday to Saturday nine to five", None),
    ],
    "hosts, IPs and ports": [
        ("localhost:8080", "localhost colon eighty eighty", None),
        ("localhost:80/", "localhost colon eighty", None),
        ("ping 10.0.0.1:8080 now", "ping one zero dot zero dot zero dot one colon eighty eighty now",
         "ping one oh dot oh dot oh dot one colon eighty eighty now"),
        ("at 192.168.1.1.", "at one nine two dot one six eight dot one dot one.", None),
        ("http://192.168.0.1:3000/x", "H T T P colon slash slash one nine two dot one six eight dot zero dot one "
         "colon three thousand slash x", "H T T P colon slash slash one nine two dot one six eight dot oh dot one "
         "colon three thousand slash x"),
    ],
    "URL schemes (read before www. too, in any case)": [
        ("Visit https://www.example.com/docs.", "Visit H T T P S colon slash slash W W W dot example dot com slash "
         "docs.", None),
        ("(http://www.a.org)", "(H T T P colon slash slash W W W dot a dot org)", None),
        ("ftp://www.gnu.org/pub/", "F T P colon slash slash W W W dot gnu dot org slash pub", None),
        ("see www.example.com.", "see W W W dot example dot com.", None),  # no scheme written: none read
        ("go to HTTPS://WWW.EXAMPLE.COM now", "go to H T T P S colon slash slash W W W dot EXAMPLE dot COM now",
         None),
        ("Http://Www.Example.com/A", "H T T P colon slash slash W W W dot Example dot com slash A", None),
        ("see WWW.EXAMPLE.COM.", "see W W W dot EXAMPLE dot COM.", None),
    ],
    "codes with hyphens": [
        ("call ext. 12-34", "call extension one two, three four", None),
        ("order no. 2231-4477 today", "order number two two three one, four four seven seven today", None),
        ("Ref: 55-120", "Reference: five five, one two zero", "Reference: five five, one two oh"),
        ("Part No. 22-25", "Part number two two, two five", None),
        ("Parts 22-25", "Parts twenty-two to twenty-five", None),  # no cue: a range
        ("(1729 - 1811)", "(seventeen twenty-nine to eighteen eleven)", None),  # spaced: the same range
        ("5 - 3 = 2", "five minus three equals two", None),
        ("see p.4", "see page four", None),
    ],
}
_CASES = [pytest.param(t, us, uk, id=f"{fam}:{t}") for fam, rows in FAMILIES.items() for t, us, uk in rows]


@pytest.mark.parametrize("text,us,uk", _CASES)
def test_families_in_both_accents(text, us, uk):
    _both(text, us, uk)


@pytest.mark.parametrize("name,pieces", [
    ("salesteam", ("sales", "team")), ("customerservice", ("customer", "service")),
    ("rtxprohelp", ("RTX", "pro", "help")), ("support", None), ("jsmith", None), ("nvidia", None),
    ("myemail", None), ("abc", None), ("SalesTeam", ("Sales", "Team"))])
def test_split_words(name, pieces):
    assert split_words(name) == pieces


def test_split_words_refuses_non_letters():
    assert split_words("sales2team") is None and split_words("ventes\u00e9quipe") is None


# The #34 rules look at their neighbours (the next word, a digit, a capital): every mixture of
# them with numbers and symbols must read without a digit and the same on a second pass.
_PIECES = ["#hashTag", "@JaneDoe", "#blacklivesmatter", "salesteam@acme.com", "XXth", "IInd", "the", "XIV", "Sam", "II",
           "I.", "dr.", "mr", "st", "Kilda", "jones", "eg,", "eg", "ie,", "ETC.", "E.G.", "etc", "No", "NO.", "Austin,",
           "TX", "Mon.-Fri.", "mon", "fri", "June", "5–7", "SEPT", "feb", "vol", "ISBN", "978-0-131-40221-8", "1.2e-5",
           "5k", "5K", "*", "localhost:8080", "10.0.0.1:80", "ext.", "12-34", "order", "no.", "1-8090",
           "MIG-25/235212-asdg", "Δ", "α", "ch.2", "Jan", "1977", "jr", "Ltd", "km²", "/km2", "g/cm3", "Chapters",
           "I-III", "class", "V", "Malcolm", "X", "0", "42", "2021", "/", "-", "(", ")", ",", "&", "$5"]
_mixture = st.lists(st.tuples(st.sampled_from(_PIECES), st.sampled_from([" ", " ", "", ", ", ". ", "-", "/"])),
                    min_size=1, max_size=12).map(lambda xs: "".join(a + b for a, b in xs))


# derandomize: the same 400 mixtures on every run (a CI run must not find a new case by chance); widen the
# search by hand with --hypothesis-seed or a larger max_examples when changing the rules
@settings(max_examples=400, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(text=_mixture, accent=st.sampled_from(["us", "uk"]))
def test_family_mixtures_have_no_digits_and_are_idempotent(text, accent):
    once = normalize(text, accent=accent)
    assert not re.search(r"\d", once), once
    assert normalize(once, accent=accent) == once
