"""Geomatch data (sticky.geo) and geomatch selection through the engine.

Real data throughout: the installed ``phonenumbers`` package (the ``geo`` extra) and the
shipped overlay table; the missing extra is simulated by hiding the package.
"""

from __future__ import annotations

import collections
import re
import subprocess
import sys
from typing import TYPE_CHECKING

import phonenumbers
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from phonenumbers import PhoneNumberType
from phonenumbers.geodata import GEOCODE_DATA

from sticky import Engine, GeoTier, ManualClock, NoEligibleSender, geo
from sticky.data.nanp import OVERLAY_COMPLEXES, SUBDIVISIONS
from sticky.errors import ExtraNotInstalled
from sticky.numbers import NumberType, SenderNumber
from sticky.settings import GeoMatch, PoolSettings
from sticky.testing.strategies import e164_numbers, nanp_numbers

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

AREA, OVERLAY, REGION, COUNTRY = range(4)

FULL = geo.keys_function(GeoMatch.FULL)  # builds the tables once, before any deadline
NPAS = [f"{i:03d}" for i in range(200, 1000)]


def npa_keys(npa: str) -> geo.GeoKeys:
    return FULL(f"+1{npa}5550123")


def full(number: str) -> geo.GeoKeys:
    return FULL(number)


# -- known places ------------------------------------------------------------------


@pytest.mark.parametrize(
    "complex_",
    [
        ("312", "872", "773"),  # Chicago
        ("415", "628"),  # San Francisco
        ("416", "647", "437", "942"),  # Toronto
        ("212", "646", "332", "917", "718", "347", "929"),  # New York City
        ("213", "323"),  # Los Angeles
        ("310", "424"),  # West Los Angeles
        ("305", "786", "645"),  # Miami
        ("617", "857"),  # Boston
        ("202", "771"),  # Washington, D.C.
        ("514", "438", "263"),  # Montreal
        ("604", "778", "236", "250", "672"),  # British Columbia
        ("905", "289", "365"),  # around Toronto
        ("713", "281", "832", "346"),  # Houston
        ("214", "469", "972", "945"),  # Dallas
        ("210", "726"),  # San Antonio
    ],
)
def test_overlay_complexes_share_one_overlay_key(complex_: tuple[str, ...]) -> None:
    keys = [npa_keys(npa) for npa in complex_]
    assert {k[AREA] for k in keys} == set(complex_)
    assert len({k[OVERLAY] for k in keys}) == 1
    assert keys[0][OVERLAY] is not None
    assert len({k[REGION] for k in keys}) == 1
    assert len({k[COUNTRY] for k in keys}) == 1


def test_chicago_overlay_key_and_every_tier() -> None:
    assert full("+13125550123") == ("312", "US-IL:chicago", "US-IL", "US")
    assert full("+18725550123") == ("872", "US-IL:chicago", "US-IL", "US")


def test_chicago_and_springfield_illinois_share_the_state_not_the_overlay() -> None:
    chicago, springfield = full("+13125550123"), full("+12175550123")
    assert chicago[REGION] == springfield[REGION] == "US-IL"
    assert chicago[OVERLAY] != springfield[OVERLAY]
    assert springfield[OVERLAY] is not None  # 217/447 is an overlay of its own


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("213", "310"),  # Los Angeles and West LA: a split, not an overlay
        ("312", "847"),  # Chicago and its northern suburbs
        ("415", "916"),  # San Francisco and Sacramento: both "California" in the geocoder
        ("416", "905"),  # Toronto and the 905 belt: a split, then separate overlays
        ("212", "516"),  # Manhattan and Nassau County
    ],
)
def test_neighbours_that_are_not_overlays_share_only_the_region(a: str, b: str) -> None:
    ka, kb = npa_keys(a), npa_keys(b)
    assert ka[OVERLAY] != kb[OVERLAY]
    assert ka[REGION] == kb[REGION] is not None


def test_a_state_wide_geocoder_description_is_never_an_overlay() -> None:
    # The geocoder says "California" for 37 area codes; they must not become one overlay.
    california = [k[1:] for k, v in GEOCODE_DATA.items() if k[0] == "1" and len(k) == 4]
    california = [npa for npa in california if GEOCODE_DATA["1" + npa].get("en") == "California"]
    assert len(california) > 20
    sizes = collections.Counter(npa_keys(npa)[OVERLAY] for npa in california)
    del sizes[None]  # area codes without an overlay
    assert max(sizes.values()) <= 3  # the largest real complex there is 213/323/738
    for npa in california:
        assert npa_keys(npa)[REGION] == "US-CA"


def test_canada_and_its_multi_province_area_codes() -> None:
    assert full("+14165550123")[REGION:] == ("CA-ON", "CA")
    assert full("+15145550123")[REGION:] == ("CA-QC", "CA")
    assert full("+19025550123")[REGION] == "CA-NS/PE"  # Nova Scotia and PEI share 902
    assert full("+18675550123")[REGION] == "CA-NT/NU/YT"


def test_other_nanp_countries_have_an_area_code_and_a_country_but_no_region() -> None:
    assert full("+18765550123") == ("876", "JM:jamaica", None, "JM")
    assert full("+17875550123") == ("787", "PR:puerto-rico", None, "PR")
    assert full("+12425550123") == ("242", None, None, "BS")


def test_a_uk_number_has_a_country_only() -> None:
    assert full("+447700900123") == (None, None, None, "GB")
    assert full("+442079460000") == (None, None, None, "GB")


@pytest.mark.parametrize(
    ("number", "country"),
    [
        ("+33612345678", "FR"),
        ("+4915123456789", "DE"),
        ("+77012345678", "KZ"),  # +7 is shared: 7xx is Kazakhstan...
        ("+74951234567", "RU"),  # ...the rest Russia
        ("+358181234567", "AX"),  # Aland in +358
        ("+358401234567", "FI"),
        ("+390669812345", "VA"),  # the Vatican in +39
        ("+390612345678", "IT"),
        ("+4779123456", "SJ"),  # Svalbard in +47
        ("+4712345678", "NO"),
        ("+447624123456", "IM"),  # the Isle of Man in +44
        ("+61412345678", "AU"),
        ("+5999123456", "CW"),
    ],
)
def test_country_key_of_other_countries(number: str, country: str) -> None:
    assert full(number) == (None, None, None, country)


@pytest.mark.parametrize(
    "number", ["+80012345678", "+88213456789", "+9991234567", "+2591234567", "+1234567"]
)
def test_numbers_of_no_country_have_no_keys(number: str) -> None:
    # +800 and +882 are non-geographic entities, +999 and +259 no calling code at all,
    # and a +1 number that is not 10 digits is no NANP number.
    assert full(number) == geo.NO_KEYS


@pytest.mark.parametrize("npa", ["800", "833", "844", "855", "866", "877", "888"])
def test_toll_free_numbers_are_national(npa: str) -> None:
    number = f"+1{npa}5550123"
    assert geo.area_code_keys(number) == geo.NO_KEYS
    assert full(number) == (None, None, None, "US")  # libphonenumber's home of +1 toll-free


@pytest.mark.parametrize("npa", ["500", "533", "600", "622", "700", "710", "900", "456"])
def test_non_geographic_numbers_have_no_area_code(npa: str) -> None:
    number = f"+1{npa}5550123"
    assert geo.area_code_keys(number) == geo.NO_KEYS
    assert full(number)[: REGION + 1] == (None, None, None)


# -- the data table against libphonenumber's data ------------------------------------


def test_overlay_table_matches_libphonenumber() -> None:
    seen: dict[str, str] = {}
    for key, npas in OVERLAY_COMPLEXES.items():
        place, _, name = key.partition(":")
        assert name
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", name), key
        assert len(npas) >= 2, key
        for npa in npas:
            assert npa not in seen, f"{npa} is in {seen.get(npa)} and {key}"
            seen[npa] = key
            assert geo.is_geographic_npa(npa)
            keys = npa_keys(npa)
            assert keys[COUNTRY] is not None, f"libphonenumber does not know {npa}"
            assert keys[OVERLAY] == key
            # The geocoder's state or province (or the country, outside the US and
            # Canada) is the one the key names.
            assert place in {keys[REGION], keys[COUNTRY]}, (npa, key, keys)


def test_geocoder_cities_and_the_table_agree() -> None:
    # Area codes the geocoder describes by one city share an overlay, unless the table
    # says otherwise; the only such case is 934, Suffolk County, which the geocoder
    # calls "New York, NY".
    by_city: dict[str, set[str]] = collections.defaultdict(set)
    for prefix, names in GEOCODE_DATA.items():
        if prefix[0] == "1" and len(prefix) == 4 and ", " in names.get("en", ""):
            by_city[names["en"]].add(prefix[1:])
    assert by_city["Chicago, IL"] == {"312", "773", "872"}
    exceptions = set()
    for city, npas in by_city.items():
        overlays = collections.Counter(npa_keys(npa)[OVERLAY] for npa in npas)
        main, _ = overlays.most_common(1)[0]
        assert main is not None, city
        exceptions |= {npa for npa in npas if npa_keys(npa)[OVERLAY] != main}
    assert exceptions == {"934"}


def test_subdivision_names_cover_every_geocoder_description() -> None:
    # Every whole-area-code description of a US or Canadian area code names a place
    # the table knows (or a city with its state or province code).
    for npa in NPAS:
        keys = npa_keys(npa)
        if keys[AREA] is not None and keys[COUNTRY] in SUBDIVISIONS:
            region = keys[REGION]
            assert region is not None, npa
            assert region.startswith(f"{keys[COUNTRY]}-")


def test_tiers_nest() -> None:
    # Same overlay implies same region implies same country, for every area code.
    keys = [npa_keys(npa) for npa in NPAS]
    for near, far in ((OVERLAY, REGION), (REGION, COUNTRY), (AREA, COUNTRY)):
        outer: dict[str, set[str | None]] = collections.defaultdict(set)
        for k in keys:
            inner = k[near]
            if inner is not None:
                outer[inner].add(k[far])
        assert all(len(v) == 1 for v in outer.values()), (near, far)


def test_the_built_in_non_geographic_list_matches_libphonenumber() -> None:
    # Area codes that libphonenumber knows but does not geocode (toll-free, premium,
    # personal...) are in the built-in list; every geocoded one is geographic.
    geocoded = {p[1:4] for p in GEOCODE_DATA if p[0] == "1" and len(p) >= 4}
    known = {npa for npa in NPAS if npa_keys(npa)[COUNTRY] is not None}
    us_ca = {npa for npa in known if npa_keys(npa)[COUNTRY] in SUBDIVISIONS}
    assert us_ca - geocoded <= geo.NON_GEOGRAPHIC_NPAS
    assert not geocoded & geo.NON_GEOGRAPHIC_NPAS
    assert geo.TOLL_FREE_NPAS <= geo.NON_GEOGRAPHIC_NPAS


_VALIDATION_ONLY_TERRITORIES = {"GG", "JE", "CC", "CX", "YT", "BL", "MF", "EH"}


def test_country_key_is_libphonenumbers_region_for_example_numbers() -> None:
    # For every region's example numbers of every type, the country key is what
    # region_code_for_number says, except the territories libphonenumber tells apart
    # from their calling code's main country only by full-number validation.
    checked = 0
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in PhoneNumberType.values():
            example = phonenumbers.example_number_for_type(region, kind)
            if example is None:
                continue
            want = phonenumbers.region_code_for_number(example)
            e164 = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
            if want is None or want in _VALIDATION_ONLY_TERRITORIES:
                continue
            if e164.startswith("+1") and len(e164) != 12:
                continue  # Canada's 7-digit 310-xxxx numbers are not NANP numbers
            assert full(e164)[COUNTRY] == want, (e164, kind)
            checked += 1
    assert checked > 1000


# -- properties ----------------------------------------------------------------------

any_number = st.one_of(e164_numbers(), nanp_numbers())


@pytest.fixture(scope="module")
def fresh_full() -> Callable[[str], geo.GeoKeys]:
    # A second, separately built function: its caches start cold, so agreeing with the
    # shared one shows the keys do not depend on which numbers were seen first.
    return geo._full_keys_function.__wrapped__()


@given(any_number)
def test_full_keys_are_four_optional_strings_and_deterministic(number: str) -> None:
    keys = FULL(number)
    assert isinstance(keys, tuple)
    assert len(keys) == 4
    assert all(k is None or isinstance(k, str) for k in keys)
    assert FULL(number) == keys


@given(st.lists(any_number, max_size=20))
def test_keys_do_not_depend_on_cache_state(
    fresh_full: Callable[[str], geo.GeoKeys], numbers: list[str]
) -> None:
    for number in reversed(numbers):
        fresh_full(number)
    assert [FULL(n) for n in numbers] == [fresh_full(n) for n in numbers]


@given(any_number)
def test_full_area_code_tier_is_the_built_in_tier(number: str) -> None:
    assert FULL(number)[AREA] == geo.area_code_keys(number)[AREA]
    assert geo.area_code_keys(number)[1:] == (None, None, None)


@given(
    st.sampled_from(["7", "39", "44", "47", "61", "212", "262", "290", "358", "590", "599"]),
    st.text("0123456789", min_size=5, max_size=12),
)
def test_shared_calling_codes_are_decided_by_a_prefix(code: str, national: str) -> None:
    # Keys are cached per prefix of a shared calling code: the prefix must decide as
    # the whole national number does under libphonenumber's leading-digits rule.
    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE[int(code)]
    want = regions[0]
    for region in regions:
        metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
        pattern = None if metadata is None else metadata.leading_digits
        if pattern and re.match(pattern, national):
            want = region
            break
    assert FULL(f"+{code}{national}") == (None, None, None, want)


# -- the built-in tier and the missing extra -----------------------------------------


def test_area_code_keys_built_in() -> None:
    assert geo.area_code_keys("+13125550123") == ("312", None, None, None)
    assert geo.area_code_keys("+18725550123") == ("872", None, None, None)
    assert geo.area_code_keys("+18005550123") == geo.NO_KEYS
    assert geo.area_code_keys("+447700900123") == geo.NO_KEYS
    assert geo.area_code_keys("+1312555012") == geo.NO_KEYS  # 9 digits: not NANP
    assert geo.keys_function(GeoMatch.AREA_CODE) is geo.area_code_keys


def test_auto_with_the_extra_is_full() -> None:
    assert geo.geo_extra_installed()
    assert geo.keys_function(GeoMatch.AUTO) is FULL
    assert geo.keys_function(GeoMatch.FULL) is FULL


def test_without_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "phonenumbers", None)  # import raises ImportError
    assert not geo.geo_extra_installed()
    with pytest.raises(ExtraNotInstalled, match=r"pip install 'sticky-sender\[geo\]'") as info:
        geo.require_geo_extra()
    assert info.value.extra == "geo"
    assert "phonenumbers" in str(info.value)
    with pytest.raises(ExtraNotInstalled, match=r"pip install 'sticky-sender\[geo\]'"):
        geo.keys_function(GeoMatch.FULL)
    with pytest.raises(ExtraNotInstalled):
        PoolSettings(geomatch="full")
    assert geo.keys_function(GeoMatch.AUTO) is geo.area_code_keys
    assert geo.keys_function(GeoMatch.AREA_CODE) is geo.area_code_keys
    assert geo.area_code_keys("+13125550123") == ("312", None, None, None)


def test_phonenumbers_is_imported_lazily() -> None:
    # Importing sticky, and the built-in tier, never import phonenumbers; a full
    # geomatch call does.
    code = (
        "import sys\n"
        "import sticky, sticky.geo as g\n"
        "from sticky.settings import GeoMatch\n"
        "assert g.keys_function(GeoMatch.AREA_CODE)('+13125550123')[0] == '312'\n"
        "assert 'phonenumbers' not in sys.modules, 'imported too early'\n"
        "g.keys_function(GeoMatch.FULL)\n"
        "assert 'phonenumbers' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# -- selection through the engine ----------------------------------------------------

NY = "+12125550101"
CHICAGO = "+13125550102"
CHICAGO_872 = "+18725550103"
SPRINGFIELD_IL = "+12175550104"
SAN_FRANCISCO = "+14155550105"
SF_628 = "+16285550106"
TORONTO = "+14165550107"
TORONTO_437 = "+14375550108"
TOLL_FREE = "+18005550109"
UK = "+447700900110"
UK_2 = "+447700900111"
FR = "+33612345112"


def engine_with(
    pool: Sequence[str | tuple[str, NumberType]], seed: int = 1, **settings_: object
) -> Engine:
    """An engine with profile "p" (geomatch full) whose pool is ``pool``."""
    engine = Engine(clock=ManualClock(0), seed=seed)
    engine.create_profile("p", PoolSettings(geomatch="full", **settings_))
    for item in pool:
        number, kind = (item, NumberType.LONG_CODE) if isinstance(item, str) else item
        engine.add_number("p", number, kind)
    return engine


def test_engine_chicago_recipient_gets_the_872_overlay_not_new_york() -> None:
    engine = engine_with([CHICAGO_872, NY])
    for i in range(20):
        selection = engine.select("p", f"+1312555{i:04d}")
        assert selection.from_number == CHICAGO_872
        assert selection.tier is GeoTier.OVERLAY
    assert engine.stats().tier_overlay == 20


def test_engine_area_code_comes_before_the_overlay() -> None:
    engine = engine_with([CHICAGO, CHICAGO_872, NY])
    for i in range(20):
        selection = engine.select("p", f"+1312555{i:04d}")
        assert (selection.from_number, selection.tier) == (CHICAGO, GeoTier.AREA_CODE)


@pytest.mark.parametrize(
    ("to", "sender"),
    [("+16285551234", SAN_FRANCISCO), ("+14155551234", SF_628), ("+16475551234", TORONTO_437)],
)
def test_engine_overlays_of_san_francisco_and_toronto(to: str, sender: str) -> None:
    engine = engine_with([sender, NY, UK])
    selection = engine.select("p", to)
    assert (selection.from_number, selection.tier) == (sender, GeoTier.OVERLAY)


def test_engine_same_state_without_same_area_code_gets_the_region() -> None:
    # Springfield, IL (217): no 217 or 447 number, but Chicago is in Illinois.
    engine = engine_with([CHICAGO, NY, SAN_FRANCISCO])
    for i in range(20):
        selection = engine.select("p", f"+1217555{i:04d}")
        assert (selection.from_number, selection.tier) == (CHICAGO, GeoTier.REGION)
    assert engine.stats().tier_region == 20


def test_engine_uk_recipient_with_a_uk_long_code_gets_the_country() -> None:
    engine = engine_with([NY, CHICAGO, UK, (TOLL_FREE, NumberType.TOLL_FREE), FR])
    for i in range(20):
        selection = engine.select("p", f"+4479009{i:05d}")
        assert (selection.from_number, selection.tier) == (UK, GeoTier.COUNTRY)


def test_engine_uk_recipient_without_a_uk_number_gets_the_weighted_choice() -> None:
    engine = engine_with([NY, CHICAGO, (TOLL_FREE, NumberType.TOLL_FREE)])
    chosen = set()
    for i in range(60):
        selection = engine.select("p", f"+4479009{i:05d}")
        assert selection.tier is GeoTier.NONE
        chosen.add(selection.from_number)
    assert chosen == {NY, CHICAGO, TOLL_FREE}
    assert engine.stats().tier_none == 60


def test_engine_toll_free_numbers_are_in_the_country_tier_only() -> None:
    # A US recipient with no number in its state: the US toll-free number is in its
    # country; the Toronto number is not. A toll-free number never wins an area code.
    engine = engine_with([(TOLL_FREE, NumberType.TOLL_FREE), TORONTO])
    selection = engine.select("p", "+12175550000")
    assert (selection.from_number, selection.tier) == (TOLL_FREE, GeoTier.COUNTRY)
    selection = engine.select("p", "+18005550000")
    assert (selection.from_number, selection.tier) == (TOLL_FREE, GeoTier.COUNTRY)


def test_engine_weight_zero_type_is_never_chosen_by_geomatch() -> None:
    engine = engine_with(
        [CHICAGO, (TOLL_FREE, NumberType.TOLL_FREE)], long_code_weight=0, toll_free_weight=1
    )
    for i in range(20):
        selection = engine.select("p", f"+1312555{i:04d}")
        assert (selection.from_number, selection.tier) == (TOLL_FREE, GeoTier.COUNTRY)
    engine = engine_with([(TOLL_FREE, NumberType.TOLL_FREE), UK], toll_free_weight=0)
    for i in range(20):
        selection = engine.select("p", f"+1212555{i:04d}")
        assert (selection.from_number, selection.tier) == (UK, GeoTier.NONE)


def test_engine_unhealthy_numbers_are_skipped_by_geomatch_only_when_asked() -> None:
    engine = engine_with([CHICAGO, CHICAGO_872, NY], skip_unhealthy=True)
    engine.set_health(CHICAGO, False)
    engine.set_health(CHICAGO_872, False)
    for i in range(20):
        selection = engine.select("p", f"+1312555{i:04d}")
        assert (selection.from_number, selection.tier) == (NY, GeoTier.COUNTRY)
    engine.update_settings("p", skip_unhealthy=False)
    selection = engine.select("p", "+13125559999")
    assert (selection.from_number, selection.tier) == (CHICAGO, GeoTier.AREA_CODE)


def test_engine_a_live_mapping_wins_over_geomatch() -> None:
    engine = engine_with([CHICAGO, NY])
    engine.pin("p", "+13125550000", NY)
    selection = engine.select("p", "+13125550000")
    assert selection.from_number == NY
    assert selection.tier is None


def test_engine_geomatch_true_means_every_tier_with_the_extra() -> None:
    engine = Engine(clock=ManualClock(0), seed=1)
    engine.create_profile("p", PoolSettings(geomatch=True))
    engine.add_number("p", CHICAGO_872)
    engine.add_number("p", NY)
    assert engine.select("p", "+13125550000").tier is GeoTier.OVERLAY


POOL_CANDIDATES = [
    NY,
    CHICAGO,
    CHICAGO_872,
    SPRINGFIELD_IL,
    SAN_FRANCISCO,
    SF_628,
    TORONTO,
    TORONTO_437,
    "+15145550113",  # Montreal
    "+18765550114",  # Jamaica
    TOLL_FREE,
    "+18885550115",
    UK,
    UK_2,
    FR,
    "+77012345116",  # Kazakhstan
    "+17735550117",  # Chicago
    "+19165550118",  # Sacramento
    "+19055550119",  # around Toronto
    "+18475550120",  # Chicago's northern suburbs
]
NEAR_POOL = ["212", "312", "773", "872", "217", "415", "628", "916", "416", "437", "905", "514"]
RECIPIENTS = st.one_of(
    nanp_numbers(NEAR_POOL),
    nanp_numbers(NEAR_POOL),
    nanp_numbers(NEAR_POOL),
    nanp_numbers(["876", "800", "888", "303", "555", "647", "847", "438"]),
    st.sampled_from(POOL_CANDIDATES),
    st.builds("+4479{:08d}".format, st.integers(0, 10**8 - 1)),
    st.builds("+336{:08d}".format, st.integers(0, 10**8 - 1)),
    e164_numbers(),
)


@settings(deadline=None, max_examples=300)
@given(
    pool=st.lists(
        st.builds(
            SenderNumber,
            st.sampled_from(POOL_CANDIDATES),
            st.sampled_from(NumberType),
            st.booleans(),
        ),
        min_size=3,
        max_size=10,
        unique_by=lambda n: n.number,
    ),
    to=RECIPIENTS,
    weights=st.sampled_from([(1.0, 1.0), (1.0, 1.0), (0.0, 1.0), (1.0, 0.0), (2.0, 10.0)]),
    skip_unhealthy=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_engine_chooses_in_the_first_non_empty_tier(
    pool: list[SenderNumber],
    to: str,
    weights: tuple[float, float],
    skip_unhealthy: bool,
    seed: int,
) -> None:
    engine = Engine(clock=ManualClock(0), seed=seed)
    engine.create_profile(
        "p",
        PoolSettings(
            geomatch="full",
            long_code_weight=weights[0],
            toll_free_weight=weights[1],
            skip_unhealthy=skip_unhealthy,
        ),
    )
    for n in pool:
        engine.add_number("p", n.number, n.type, healthy=n.healthy)
    weight = {NumberType.LONG_CODE: weights[0], NumberType.TOLL_FREE: weights[1]}
    eligible = [n for n in pool if weight[n.type] > 0 and (n.healthy or not skip_unhealthy)]
    if not eligible:
        with pytest.raises(NoEligibleSender):
            engine.select("p", to)
        return

    selection = engine.select("p", to)
    assert selection.tier is not None
    event(f"tier: {selection.tier.value}")

    # The first tier, nearest first, whose key the recipient has and that some eligible
    # number shares (long codes in every tier, toll-free numbers in the country only).
    to_keys = FULL(to)
    names = [GeoTier.AREA_CODE, GeoTier.OVERLAY, GeoTier.REGION, GeoTier.COUNTRY]
    for tier, (name, key) in enumerate(zip(names, to_keys, strict=True)):
        members = {
            n.number
            for n in eligible
            if key is not None
            and FULL(n.number)[tier] == key
            and (n.type is NumberType.LONG_CODE or tier == COUNTRY)
        }
        if members:
            assert selection.tier is name
            assert selection.from_number in members
            break
    else:
        assert selection.tier is GeoTier.NONE
        assert selection.from_number in {n.number for n in eligible}
