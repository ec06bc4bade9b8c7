"""Geomatch data: which tier keys a number has (area code, overlay, region, country).

A number's :data:`GeoKeys` are four opaque strings (or None), nearest first; two numbers
are in the same tier when their keys there are equal. ``docs/geomatch.md`` documents the
tiers and their limits.

Built in, with no data: the NANP area code (:func:`area_code_keys`). With the
``sticky-sender[geo]`` extra (libphonenumber's data, the ``phonenumbers`` package, imported
lazily) every tier (:func:`keys_function` with :attr:`GeoMatch.FULL`):

- ``area_code``: the NPA of a geographic NANP number (``"312"``);
- ``overlay``: the NANP overlay complex of that area code (``"US-IL:chicago"`` for 312,
  773 and 872), from :mod:`sticky.data.nanp` and from the geocoder where it names one
  city for a whole area code;
- ``region``: the US state or Canadian province of a NANP area code (``"US-IL"``),
  from the geocoder's description of the area code;
- ``country``: libphonenumber's ISO region code for the number (``"US"``, ``"GB"``).

Nothing is parsed per call. The full tables are built once, on the first full-geomatch
:func:`keys_function` call (about half a second, and about 100 MB for libphonenumber's
geocoder data): one entry per NANP area code and per three-digit calling-code prefix.
A call is then one string slice and one dict look-up, plus one ``lru_cache`` look-up for
the few calling codes shared by several countries (+7, +44, +47...).
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Callable, Mapping
from typing import Final

from sticky.errors import ExtraNotInstalled
from sticky.settings import GeoMatch

__all__ = [
    "NON_GEOGRAPHIC_NPAS",
    "NO_KEYS",
    "TOLL_FREE_NPAS",
    "GeoKeys",
    "area_code_keys",
    "geo_extra_installed",
    "is_geographic_npa",
    "keys_function",
    "require_geo_extra",
]

GeoKeys = tuple[str | None, str | None, str | None, str | None]
"""A number's keys in each tier, nearest first: area code, overlay, region, country."""

NO_KEYS: Final[GeoKeys] = (None, None, None, None)
"""The keys of a number no tier knows: it can only get the plain weighted choice."""

TOLL_FREE_NPAS: Final = frozenset(
    {"800", "833", "844", "855", "866", "877", "888"}  # in service
    | {"822", "880", "881", "882", "883", "884", "885", "886", "887", "889"}  # reserved
)
"""NANP toll-free area codes: national, so never an area code key."""

NON_GEOGRAPHIC_NPAS: Final = TOLL_FREE_NPAS | frozenset(
    # N00 service access codes: personal (500), Canadian (600), inter-carrier (700),
    # toll-free (800), premium (900); 200, 300 and 400 are reserved for such services.
    {"200", "300", "400", "500", "600", "700", "900"}
    # 5XX personal communications services (the non-geographic 5XX-NXX codes).
    | {"521", "522", "523", "524", "525", "526", "527", "528", "529", "532", "533", "535"}
    | {"538", "542", "543", "544", "545", "546", "547", "549", "550", "552", "553", "554"}
    | {"556", "558", "566", "569", "577", "578", "588", "589"}
    # Canadian non-geographic (622, 633), inbound international (456), US government (710).
    | {"622", "633", "456", "710"}
)
"""NANP area codes that serve no geography (NANPA's non-geographic assignments)."""


def is_geographic_npa(npa: str) -> bool:
    """Whether a NANP area code may serve a geography. O(1).

    True for every three-digit code that starts with 2-9 and is not one of
    :data:`NON_GEOGRAPHIC_NPAS` (toll-free, N00, 5XX personal, 456, 600/622/633, 710);
    unassigned codes count as geographic, so a code assigned later needs no update.
    """
    return (
        len(npa) == 3 and "2" <= npa[0] <= "9" and npa.isdigit() and npa not in NON_GEOGRAPHIC_NPAS
    )


_AREA_CODE_KEYS: Final[Mapping[str, GeoKeys]] = {
    npa: (npa, None, None, None)
    for npa in (f"{i:03d}" for i in range(1000))
    if is_geographic_npa(npa)
}


def geo_extra_installed() -> bool:
    """Whether the ``phonenumbers`` package can be imported."""
    try:
        import phonenumbers  # noqa: F401, PLC0415 - optional extra
    except ImportError:
        return False
    return True


def require_geo_extra() -> None:
    """Raise :class:`~sticky.ExtraNotInstalled` unless the geo extra is installed."""
    if not geo_extra_installed():
        raise ExtraNotInstalled("geo", "phonenumbers", "geomatch beyond the area code")


def area_code_keys(number: str) -> GeoKeys:
    """The built-in tier only: the area code of a geographic NANP number. O(1).

    ``number`` is valid E.164 (not checked). Toll-free and other non-geographic NANP
    numbers (:func:`is_geographic_npa`) and non-NANP numbers get :data:`NO_KEYS`.
    """
    if len(number) == 12 and number[1] == "1":  # "+1" and 10 digits
        return _AREA_CODE_KEYS.get(number[2:5], NO_KEYS)
    return NO_KEYS


def keys_function(mode: GeoMatch) -> Callable[[str], GeoKeys]:
    """The function giving a number's tier keys under ``mode``.

    ``AREA_CODE`` (and ``AUTO`` without the extra, and ``OFF``, which the engine never
    asks for): :func:`area_code_keys`. ``FULL`` (and ``AUTO`` with the extra): every
    tier; raises :class:`~sticky.ExtraNotInstalled` without the extra. The first full
    call builds the tables (about half a second, once per process); the function it
    returns is O(1) per call, a dict look-up on a warm table, and is safe to share
    between threads. Its argument must be valid E.164 (not checked).
    """
    if mode is GeoMatch.FULL or (mode is GeoMatch.AUTO and geo_extra_installed()):
        require_geo_extra()
        with _BUILD_LOCK:  # one build even when several threads ask at once
            return _full_keys_function()
    return area_code_keys


# -- the full tiers (phonenumbers) --------------------------------------------------

_BUILD_LOCK = threading.Lock()

_NANP_PROBES: Final = ("2345678", "4567890", "6789012", "8901234", "3012345", "5234567")
"""Subscriber numbers tried after an area code to ask libphonenumber for its country."""

_LEADING_DIGITS_SPAN: Final = 6
"""National digits that decide among countries sharing a calling code (needed: 5)."""

_SLUG_JUNK = re.compile(r"[^a-z0-9]+")


def _slug(name: str) -> str:
    """``"St. Louis"`` -> ``"st-louis"``: a city name as an overlay key's last part."""
    return _SLUG_JUNK.sub("-", name.lower()).strip("-")


@functools.cache
def _full_keys_function() -> Callable[[str], GeoKeys]:
    """Build the tables once and return the O(1) full-tier function over them."""
    nanp = _NanpTableBuilder().build()
    by_prefix, shared_end = _calling_code_tables()
    shared_keys = _shared_code_resolver()
    nanp_get = nanp.get
    prefix_get = by_prefix.get
    end_get = shared_end.get

    def full_keys(number: str) -> GeoKeys:
        """A valid E.164 number's keys in every tier. O(1): one or two look-ups."""
        if len(number) == 12 and number[1] == "1":  # "+1" and 10 digits
            return nanp_get(number[2:5], NO_KEYS)
        keys = prefix_get(number[1:4])
        if keys is not None:
            return keys
        # A calling code shared by several countries: its leading digits decide.
        end = end_get(number[1:4])
        return NO_KEYS if end is None else shared_keys(number[:end])

    return full_keys


class _NanpTableBuilder:
    """Builds the keys of every NANP area code from libphonenumber and the data table.

    Used once per process (about 50 ms, after the geocoder data's import).
    """

    def __init__(self) -> None:
        import phonenumbers  # noqa: PLC0415 - optional extra
        from phonenumbers.geodata import GEOCODE_DATA  # noqa: PLC0415 - about 100 MB

        from sticky.data import nanp  # noqa: PLC0415 - only needed here

        self._phone_number = phonenumbers.PhoneNumber
        self._region_code_for_number = phonenumbers.region_code_for_number
        self._geocode = GEOCODE_DATA
        self._names = nanp.SUBDIVISIONS
        self._listed = {npa: key for key, npas in nanp.OVERLAY_COMPLEXES.items() for npa in npas}

    def build(self) -> dict[str, GeoKeys]:
        """The keys of every area code ``"200"`` to ``"999"``."""
        return {f"{i:03d}": self.keys(f"{i:03d}") for i in range(200, 1000)}

    def keys(self, npa: str) -> GeoKeys:
        """The keys of numbers in one area code."""
        country = self.country(npa)
        if not is_geographic_npa(npa):
            # Toll-free and other national numbers belong to the country tier alone;
            # libphonenumber puts NANP toll-free numbers in "US".
            return (None, None, None, country)
        if country is None:
            # Unknown to this libphonenumber (newer than it, or unassigned): a listed
            # complex still names its region and country.
            return _listed_keys(npa, self._listed.get(npa))
        region = self.region(npa, country)
        return (npa, self.overlay(npa, region), region, country)

    def description(self, prefix: str) -> str | None:
        """The geocoder's English description of a number prefix, if it has one."""
        entry = self._geocode.get(prefix)
        return None if entry is None else entry.get("en")

    def country(self, npa: str) -> str | None:
        """The ISO region code libphonenumber gives numbers of this area code, if any."""
        for probe in _NANP_PROBES:
            number = self._phone_number(country_code=1, national_number=int(npa + probe))
            region = self._region_code_for_number(number)
            if region is not None:
                return region
        return None

    def region(self, npa: str, country: str) -> str | None:
        """The state or province of a US or Canadian area code, from the geocoder."""
        names = self._names.get(country)
        if names is None:
            return None  # libphonenumber has no subdivisions outside the US and Canada
        code = _subdivision(self.description("1" + npa), names)
        if code is None:
            # No description of the whole area code: its exchanges (NPA-NXX) must all
            # name one state or province.
            codes = {
                _subdivision(self.description(f"1{npa}{suffix}"), names)
                for width in (1, 2, 3)
                for suffix in (f"{i:0{width}d}" for i in range(10**width))
            }
            codes.discard(None)
            code = codes.pop() if len(codes) == 1 else None
        return None if code is None else f"{country}-{code}"

    def overlay(self, npa: str, region: str | None) -> str | None:
        """The listed complex, else the one city the geocoder names for the area code."""
        key = self._listed.get(npa)
        if key is not None or region is None:
            return key
        whole = self.description("1" + npa)
        if whole is None or ", " not in whole:
            return None  # a state-wide or multi-place description is not an overlay
        return f"{region}:{_slug(whole.rsplit(', ', 1)[0])}"


def _listed_keys(npa: str, overlay: str | None) -> GeoKeys:
    """Keys of a geographic area code from its listed complex alone (or none).

    ``"CA-ON:toronto"`` gives region ``"CA-ON"`` and country ``"CA"``; ``"PR:puerto-rico"``
    gives country ``"PR"`` and no region.
    """
    if overlay is None:
        return (npa, None, None, None)
    place = overlay.split(":", 1)[0]
    if "-" in place:
        return (npa, overlay, place, place.split("-", 1)[0])
    return (npa, overlay, None, place)


def _subdivision(description: str | None, names: Mapping[str, str]) -> str | None:
    """The subdivision code a geocoder description names, or None.

    ``"Chicago, IL"`` -> ``"IL"``; ``"Illinois"`` -> ``"IL"``; a description naming
    several (``"Nova Scotia/Prince Edward Island"``) -> ``"NS/PE"``.
    """
    if not description:
        return None
    if ", " in description:
        code = description.rsplit(", ", 1)[1]
        return code if code in names.values() else None
    codes = [names.get(part.strip()) for part in description.split("/")]
    if None in codes:
        return None
    return "/".join(c for c in codes if c is not None)


def _calling_code(digits: str) -> tuple[int, tuple[str, ...]] | None:
    """The calling code that ``digits`` (after ``+``) start with, and its countries.

    Calling codes are prefix-free, so at most one of the first 1, 2 or 3 digits is one.
    Non-geographic entities (+800, +882...) have no country.
    """
    import phonenumbers  # noqa: PLC0415 - optional extra

    non_geo = phonenumbers.REGION_CODE_FOR_NON_GEO_ENTITY
    for width in (1, 2, 3):
        code = int(digits[:width])
        regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(code)
        if regions:
            return code, tuple(r for r in regions if r != non_geo)
    return None


def _calling_code_tables() -> tuple[dict[str, GeoKeys], dict[str, int]]:
    """Keys of non-NANP numbers by the three digits after ``+``.

    Returns ``by_prefix``, the keys of every prefix whose calling code belongs to one
    country or none, and ``shared_end``, for the others: the length of the prefix of the
    E.164 string that decides the country (for :func:`_shared_code_resolver`).
    """
    by_prefix: dict[str, GeoKeys] = {}
    shared_end: dict[str, int] = {}
    for i in range(1000):
        prefix = f"{i:03d}"
        found = None if prefix[0] in "01" else _calling_code(prefix)
        if found is None:
            # "+0" is not E.164, "+1" numbers that are not 10 digits are not NANP, and
            # the prefix may be no calling code at all.
            by_prefix[prefix] = NO_KEYS
            continue
        code, regions = found
        if len(regions) > 1:
            shared_end[prefix] = 1 + len(str(code)) + _LEADING_DIGITS_SPAN
        else:
            by_prefix[prefix] = (None, None, None, regions[0]) if regions else NO_KEYS
    return by_prefix, shared_end


def _shared_code_resolver() -> Callable[[str], GeoKeys]:
    """The keys of a number of a shared calling code, from a prefix of its E.164 string.

    Returns an ``lru_cache``-d function (bounded: 4096 prefixes). It follows
    libphonenumber's own rule (``region_code_for_number``): the first country of the
    calling code whose leading-digits pattern matches, without the full-number
    validation it adds, so that it holds for a prefix. The territories it tells apart
    from the main country only by that validation (Guernsey and Jersey in +44, Cocos
    and Christmas Islands in +61, Mayotte in +262, Saint Barthelemy and Saint Martin
    in +590, Western Sahara in +212) get the main country's code.
    """
    import phonenumbers  # noqa: PLC0415 - optional extra

    def patterns(regions: tuple[str, ...]) -> tuple[tuple[re.Pattern[str], str], ...]:
        found = []
        for region in regions:
            metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
            if metadata is not None and metadata.leading_digits:
                found.append((re.compile(metadata.leading_digits), region))
        return tuple(found)

    by_code = {
        code: (regions[0], patterns(regions))
        for code, all_regions in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.items()
        if len(regions := tuple(all_regions)) > 1
        and phonenumbers.REGION_CODE_FOR_NON_GEO_ENTITY not in regions
        and code != 1  # NANP numbers are keyed by area code instead
    }

    @functools.lru_cache(maxsize=4096)
    def shared_keys(prefix: str) -> GeoKeys:
        found = _calling_code(prefix[1:])
        if found is None or found[0] not in by_code:
            return NO_KEYS
        code, _ = found
        main, leading = by_code[code]
        national = prefix[1 + len(str(code)) :]
        for pattern, region in leading:
            if pattern.match(national):
                return (None, None, None, region)
        return (None, None, None, main)

    return shared_keys
