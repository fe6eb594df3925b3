"""Countries, read strictly: ISO 3166-1 codes and names (pycountry), a short documented alias list, and a
sentence with the closest real candidates for anything else. No fuzzy match ever picks a country: a prior
applied for the wrong country moves probability between venomous and harmless species.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections import defaultdict
from functools import cache

import pycountry

from snakeweb.errors import SnakewebError

# Names people and tables use that pycountry does not know (former, short or colloquial); each means exactly
# one country. Documented in the README.
ALIASES = {
    "uk": "GB", "u.k.": "GB", "great britain": "GB", "britain": "GB", "england": "GB", "scotland": "GB", "wales": "GB",
    "northern ireland": "GB", "usa": "US", "u.s.a.": "US", "u.s.": "US", "united states of america": "US",
    "republic of korea": "KR", "korea, south": "KR", "democratic people's republic of korea": "KP", "korea, north": "KP",
    "north korea": "KP", "russia": "RU", "burma": "MM", "ivory coast": "CI", "cote d'ivoire": "CI", "swaziland": "SZ",
    "east timor": "TL", "democratic republic of the congo": "CD", "dr congo": "CD", "drc": "CD", "congo-kinshasa": "CD",
    "republic of the congo": "CG", "congo-brazzaville": "CG", "turkey": "TR", "macedonia": "MK", "brunei": "BN",
    "cape verde": "CV", "holland": "NL", "the netherlands": "NL", "vatican": "VA", "vatican city": "VA",
    "palestine": "PS", "laos": "LA", "micronesia": "FM", "the gambia": "GM", "the bahamas": "BS",
    "guinea bissau": "GW", "turks and caicos": "TC", "kosovo": "XK", "republic of ireland": "IE", "eire": "IE",
    "bosnia": "BA", "uae": "AE", "macau": "MO", "trinidad": "TT", "antigua": "AG", "st kitts": "KN", "st vincent": "VC",
    "congo (kinshasa)": "CD", "congo (brazzaville)": "CG", "zaire": "CD", "brasil": "BR", "deutschland": "DE",
    "espana": "ES", "italia": "IT", "osterreich": "AT", "schweiz": "CH", "suisse": "CH", "nederland": "NL",
    "sverige": "SE", "norge": "NO", "danmark": "DK", "suomi": "FI", "polska": "PL", "hellas": "GR", "turkiye": "TR",
    "us virgin islands": "VI", "czechia": "CZ", "slovak republic": "SK", "kyrgyz republic": "KG", "the philippines": "PH", "sao tome": "ST",
}
# Kosovo has no ISO 3166-1 code; XK is the code the EU, GBIF and SnakeCLEF's metadata use for it.
EXTRA_CODES = {"XK": ("XXK", "Kosovo")}
# Codes and names that do not name one current country: the sentence offers the real candidates.
NOT_ONE_COUNTRY = {
    "ZZ": ("means 'unknown country' (GBIF)", ()),
    "EU": ("is the European Union, not a country", ("DE", "FR", "IT", "ES", "GR", "PT")),
    "UN": ("is the United Nations, not a country", ()),
    "YU": ("is Yugoslavia, withdrawn in 2003", ("RS", "ME", "BA", "HR", "SI", "MK", "XK")),
    "CS": ("is Serbia and Montenegro (2003-2006) or Czechoslovakia (until 1993)", ("RS", "ME", "CZ", "SK")),
    "AN": ("is the Netherlands Antilles, dissolved in 2010", ("CW", "SX", "BQ")),
    "SU": ("is the Soviet Union, withdrawn in 1992", ("RU", "UA", "BY", "KZ", "UZ", "GE", "AM", "AZ")),
    "DD": ("is East Germany, withdrawn in 1990", ("DE",)),
    "ZR": ("is Zaire, withdrawn in 1997", ("CD",)),
    "TP": ("is East Timor's withdrawn code", ("TL",)),
    "BU": ("is Burma's withdrawn code", ("MM",)),
    "korea": ("could be South or North Korea", ("KR", "KP")),
    "congo": ("could be either Congo", ("CG", "CD")),
    "virgin islands": ("could be the British or the US Virgin Islands", ("VG", "VI")),
    "america": ("could be the United States or the Americas", ("US",)),
    "northern cyprus": ("has no ISO code (its area is part of CY, Cyprus, in ISO 3166)", ("CY",)),
    "n cyprus": ("has no ISO code (its area is part of CY, Cyprus, in ISO 3166)", ("CY",)),
}


def is_area_without_code(text: str) -> bool:
    """Whether `text` names an area ISO 3166 gives no code of its own (Northern Cyprus): a country-table column
    for it is left out with a note, where any other header that names no one country is refused."""
    return _key(text) in ("n cyprus", "northern cyprus")


class CountryError(SnakewebError):
    """A country that is not exactly one current country; the message lists the real candidates."""


def _key(text: str) -> str:
    """Lower case, no accents ('México' = 'mexico'), one kind of apostrophe, single spaces, 'St' = 'Saint'."""
    text = unicodedata.normalize("NFKD", str(text))
    text = "".join(c for c in text if not unicodedata.combining(c)).replace("\u2019", "'").replace("_", " ")
    key = " ".join(text.strip().lower().split())
    return re.sub(r"^st\.? ", "saint ", key)


def _derived_names(name: str) -> list[str]:
    """Other ways people write an ISO name: 'Korea, Republic of' -> 'Republic of Korea', 'Virgin Islands, U.S.' ->
    'U.S. Virgin Islands', 'Saint Martin (French part)' -> 'Saint Martin'."""
    derived = []
    bare = re.sub(r"\s*\([^()]*\)$", "", name)
    if bare != name:
        derived.append(bare)
    if ", " in bare:
        head, tail = bare.split(", ", 1)
        derived.append(f"{tail} {head}")
        if tail.lower().startswith("the "):
            derived.append(f"{tail[4:]} {head}")
    return derived


@cache
def _names() -> dict[str, str]:
    """Every accepted spelling (lower-case) -> alpha-2 code."""
    names: dict[str, str] = {}
    derived: dict[str, set[str]] = defaultdict(set)
    for country in pycountry.countries:
        for attribute in ("alpha_2", "alpha_3", "name", "official_name", "common_name"):
            value = getattr(country, attribute, None)
            if value:
                names[_key(value)] = country.alpha_2
                for other in _derived_names(value):
                    derived[_key(other)].add(country.alpha_2)
    for key, codes in derived.items():
        if len(codes) == 1 and key not in names:  # a derived spelling two countries share stays unknown
            names[key] = codes.pop()
    for code, (alpha_3, name) in EXTRA_CODES.items():
        names.update({code.lower(): code, alpha_3.lower(): code, name.lower(): code})
    names.update({_key(alias): code for alias, code in ALIASES.items()})
    for refused in NOT_ONE_COUNTRY:
        names.pop(refused.lower(), None)
    return names


def country_name(code: str) -> str:
    """'DE' -> 'Germany' (pycountry's common name where it has one)."""
    if code in EXTRA_CODES:
        return EXTRA_CODES[code][1]
    country = pycountry.countries.get(alpha_2=code)
    return getattr(country, "common_name", None) or country.name if country else code


def all_countries() -> list[tuple[str, str]]:
    """(alpha-2 code, name) of every country snakeweb accepts, sorted by name: for pickers."""
    codes = sorted({*(c.alpha_2 for c in pycountry.countries), *EXTRA_CODES})
    return sorted(((c, country_name(c)) for c in codes), key=lambda pair: pair[1])


def lookup_country(text: str) -> str | None:
    """The alpha-2 code `text` names exactly, else None (no fuzzy matching). A trailing parenthetical is
    dropped only when the name without it is one country: 'Bolivia (Plurinational State of)' is BO, while
    'Congo (Kinshasa)' is CD through the alias list, never the ambiguous 'Congo'."""
    names = _names()
    code = names.get(_key(text))
    if code is None:
        bare = re.sub(r"\s*\([^()]*\)\s*$", "", str(text))
        if bare != str(text) and _key(bare) not in NOT_ONE_COUNTRY:
            code = names.get(_key(bare))
    return code


def resolve_country(text: str, where: str = "") -> str:
    """The alpha-2 code of a country given as an ISO alpha-2 or alpha-3 code, a name or a documented alias.

    Raises CountryError with a sentence listing the closest real candidates for a reserved, withdrawn or
    ambiguous code (ZZ, YU, CS, AN, EU, ...) and for anything unknown. `where` names the source in the message.
    """
    code = lookup_country(text)
    if code is not None:
        return code
    raise CountryError(refusal(text, where))


def refusal(text: str, where: str = "") -> str:
    """The sentence for a country that is not exactly one current country."""
    given = str(text).strip()
    source = f" ({where})" if where else ""
    special = NOT_ONE_COUNTRY.get(given.upper()) or NOT_ONE_COUNTRY.get(_key(given))
    if special is not None:
        reason, candidates = special
    else:
        reason, candidates = "is not a country snakeweb knows", _closest(given)
    offered = ("; did you mean " + ", ".join(f"{c} ({country_name(c)})" for c in candidates) + "?") if candidates else "."
    return (f"Country {given!r}{source} {reason}{offered} Give an ISO code such as DE or a name such as Germany, "
            "or leave the country out.")


def _closest(text: str, n: int = 4) -> tuple[str, ...]:
    key = _key(text)
    names = _names()
    found: list[str] = []
    for match in difflib.get_close_matches(key, list(names), n=12, cutoff=0.6):
        if names[match] not in found:
            found.append(names[match])
    return tuple(found[:n])


def country_column(table, column: str) -> list[str | None]:
    """A table column of countries (codes or names) as alpha-2 codes; empty or 'unknown' cells are None.

    `table` is a `snakeweb.tables.Table`. Any other value that is not exactly one country is refused with the
    file, the lines and the real candidates (a metadata row from 'ZZ' or 'YU' must not get another country's prior).
    """
    values = table.text(column)
    codes: dict[str, str | None] = {}
    refused: list[str] = []
    for value in values.dropna().unique():
        code = None if value.lower() == "unknown" else lookup_country(value)
        if code is None and value.lower() != "unknown":
            refused.append(value)
        codes[value] = code
    if refused:
        mask = values.isin(refused).to_numpy()
        raise table.fail(f"{int(mask.sum())} row(s) have a country that is not exactly one current country "
                         f"({table.where(mask, column)}). {refusal(refused[0], f'column {column}')}")
    return [None if v is None else codes[v] for v in values]
