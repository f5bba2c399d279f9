"""Units of measure: written forms -> spoken names in both accents, and "per" units.

``_UNITS[form] = (US singular, US plural, UK singular, UK plural)``. A unit is read
only right after a number (the rules live in :mod:`helpers.text.normalize`).
"""
from __future__ import annotations

import re

# Units after a number. Each: written forms -> (US singular, US plural, UK singular, UK plural).
def _u(sg: str, pl: str | None = None, uk_sg: str | None = None, uk_pl: str | None = None):
    pl = pl or sg + "s"
    return (sg, pl, uk_sg or sg, uk_pl or (uk_sg + "s" if uk_sg else pl))


_UNITS = {}
for _forms, _spec in [
    (("km",), _u("kilometer", uk_sg="kilometre")), (("m",), _u("meter", uk_sg="metre")),
    (("cm",), _u("centimeter", uk_sg="centimetre")), (("mm",), _u("millimeter", uk_sg="millimetre")),
    (("µm", "μm"), _u("micrometer", uk_sg="micrometre")), (("nm",), _u("nanometer", uk_sg="nanometre")),
    (("mi",), _u("mile")), (("ft",), _u("foot", "feet")), (("yd", "yds"), _u("yard")),
    (("kg", "kgs"), _u("kilogram")), (("g",), _u("gram")), (("mg",), _u("milligram")),
    (("lb", "lbs"), _u("pound")), (("oz",), _u("ounce")),
    (("l", "L"), _u("liter", uk_sg="litre")), (("ml", "mL"), _u("milliliter", uk_sg="millilitre")),
    (("gal",), _u("gallon")),
    (("mph",), _u("mile per hour", "miles per hour")),
    (("km/h", "kph", "kmh", "km/hr"), _u("kilometer per hour", "kilometers per hour", "kilometre per hour", "kilometres per hour")),
    (("m/s",), _u("meter per second", "meters per second", "metre per second", "metres per second")),
    (("°C", "ºC", "° C"), _u("degree Celsius", "degrees Celsius")),
    (("°F", "ºF", "° F"), _u("degree Fahrenheit", "degrees Fahrenheit")),
    (("°", "º"), _u("degree")),
    (("Hz",), _u("hertz", "hertz")), (("kHz",), _u("kilohertz", "kilohertz")),
    (("MHz",), _u("megahertz", "megahertz")), (("GHz",), _u("gigahertz", "gigahertz")),
    (("W",), _u("watt")), (("kW",), _u("kilowatt")), (("kWh",), _u("kilowatt hour")), (("V",), _u("volt")),
    (("mAh",), _u("milliamp hour")), (("mA",), _u("milliamp")), (("kV",), _u("kilovolt")),
    (("MW",), _u("megawatt")), (("GW",), _u("gigawatt")), (("kPa",), _u("kilopascal")), (("hPa",), _u("hectopascal")),
    (("psi",), _u("pound per square inch", "pounds per square inch")), (("ha",), _u("hectare")), (("hp",), _u("horsepower", "horsepower")),
    (("KB", "kB"), _u("kilobyte")), (("MB",), _u("megabyte")), (("GB",), _u("gigabyte")), (("TB",), _u("terabyte")),
    (("Mbps",), _u("megabit per second", "megabits per second")), (("Gbps",), _u("gigabit per second", "gigabits per second")),
    (("ms",), _u("millisecond")), (("sec", "secs"), _u("second")), (("min", "mins"), _u("minute")),
    (("h", "hr", "hrs"), _u("hour")), (("yr", "yrs"), _u("year")),
    (("dB",), _u("decibel")), (("kcal",), _u("kilocalorie")), (("cal",), _u("calorie")),
    (("bpm",), _u("beat per minute", "beats per minute")), (("px",), _u("pixel")),
    (("m^2", "sq m"), _u("square meter", uk_sg="square metre")), (("km^2", "sq km"), _u("square kilometer", uk_sg="square kilometre")),
    (("cm^2",), _u("square centimeter", uk_sg="square centimetre")), (("ft^2", "sq ft"), _u("square foot", "square feet")),
    (("m^3", "m3"), _u("cubic meter", uk_sg="cubic metre")),
    (("km^3",), _u("cubic kilometer", uk_sg="cubic kilometre")), (("ft^3", "cu ft"), _u("cubic foot", "cubic feet")),
    (("KG", "Kg"), _u("kilogram")), (("KM", "Km"), _u("kilometer", uk_sg="kilometre")),
    (("mbps", "MBPS"), _u("megabit per second", "megabits per second")),
    (("kbps", "Kbps"), _u("kilobit per second", "kilobits per second")),
    (("gbps", "GBPS"), _u("gigabit per second", "gigabits per second")),
    (("m2",), _u("square meter", uk_sg="square metre")), (("km2",), _u("square kilometer", uk_sg="square kilometre")), (("cm^3", "cc"), _u("cubic centimeter", uk_sg="cubic centimetre")),
]:
    for _f in _forms:
        _UNITS[_f] = _spec
_UNIT_ALT = "|".join(re.escape(f) for f in sorted(_UNITS, key=len, reverse=True))

_PER_UNITS = {"mo": "month", "month": "month", "yr": "year", "year": "year", "wk": "week", "week": "week",
              "d": "day", "day": "day", "hr": "hour", "h": "hour", "hour": "hour", "min": "minute", "s": "second",
              "sec": "second", "kg": "kilogram", "g": "gram", "mg": "milligram", "lb": "pound", "oz": "ounce",
              "km": "kilometer", "m": "meter", "cm": "centimeter", "mm": "millimeter", "mi": "mile", "ft": "foot",
              "l": "liter", "L": "liter", "ml": "milliliter", "gal": "gallon", "person": "person", "head": "head",
              "unit": "unit", "item": "item", "night": "night", "sq ft": "square foot", "m2": "square meter",
              # areas and volumes after "per" ("381.2/km²": ² is "^2" by now; "g/cm3", "/mi2")
              "m^2": "square meter", "km^2": "square kilometer", "km2": "square kilometer", "sq km": "square kilometer",
              "mi^2": "square mile", "mi2": "square mile", "sq mi": "square mile", "ft^2": "square foot",
              "cm^2": "square centimeter", "cm2": "square centimeter", "cm^3": "cubic centimeter",
              "cm3": "cubic centimeter", "cc": "cubic centimeter", "m^3": "cubic meter", "m3": "cubic meter"}
_PER_UK = {"kilometer": "kilometre", "meter": "metre", "centimeter": "centimetre", "millimeter": "millimetre",
           "liter": "litre", "milliliter": "millilitre", "square meter": "square metre",
           "square kilometer": "square kilometre", "square centimeter": "square centimetre",
           "cubic centimeter": "cubic centimetre", "cubic meter": "cubic metre"}
_PER_RE = re.compile(r"(?<=\d)(?P<unit>\s?(?:" + "|".join(re.escape(u) for u in sorted(_UNITS, key=len, reverse=True))
                     + r"))?\s?/\s?(?P<per>" + "|".join(re.escape(u) for u in sorted(_PER_UNITS, key=len, reverse=True))
                     + r")(?![\w/^])")


def _per(m: re.Match, accent: str) -> str:
    name = _PER_UNITS[m["per"]]
    if accent == "uk":
        name = _PER_UK.get(name, name)
    return (m["unit"] or "") + " per " + name


def _unit_name(unit: str, one: bool, accent: str) -> str:
    us_sg, us_pl, uk_sg, uk_pl = _UNITS[unit]
    return (us_sg if one else us_pl) if accent == "us" else (uk_sg if one else uk_pl)
