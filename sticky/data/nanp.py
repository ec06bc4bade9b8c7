"""NANP data for the geomatch tiers that libphonenumber cannot give on its own.

Two tables, both read by :mod:`sticky.geo` once, on the first full-geomatch use.

``SUBDIVISIONS``
    US states (and the District of Columbia) and Canadian provinces and territories,
    by the English names libphonenumber's geocoder uses for whole area codes
    (``phonenumbers.geodata``, e.g. ``"Illinois"``, ``"Washington State"``, and its
    misspelling ``"British Colombia"``), mapped to their postal / ISO 3166-2 codes. The
    geocoder's city descriptions already end in the code (``"Chicago, IL"``).

``OVERLAY_COMPLEXES``
    NANP overlay complexes: sets of area codes (NPAs) that serve one geography. The
    geocoder has no overlay table, and names most area codes only by state
    (``"California"`` for 415 and 628 alike), so an overlay cannot be derived from it
    in general. :mod:`sticky.geo` derives an overlay from the geocoder only where it
    names one *city* for a whole area code (``"Chicago, IL"`` for 312, 773 and 872),
    and takes every complex listed here as it is.

Source and method. The complexes were compiled from the NANP Administrator's area code
records and planning letters (https://www.nationalnanpa.com, "NPA code" reports and
relief planning letters) and, for Canada, the Canadian Numbering Administrator
(https://www.cnac.ca), as of 2025: every overlay in service or assigned that
libphonenumber 9.0 knows. Only real overlays are listed; area codes created by a
geographic split (such as 310 and 213 in Los Angeles, or 312 and 773 before 872) are not
an overlay of each other, unless a later overlay code covers both, as 872 covers 312 and
773. Because a number has one overlay key, such a complex is the union of all the area
codes under that overlay: 312/773/872 Chicago, 212/646/332/718/347/929/917 New York City
(917 covers all five boroughs), 412/724/878 Pittsburgh, and the province-wide complexes
of Alberta, British Columbia, Manitoba and Saskatchewan.

Each key is ``"<region key>:<name>"``: the region key that :mod:`sticky.geo` gives the
member area codes (``"US-IL"``, ``"CA-ON"``; the country code alone outside the US and
Canada, ``"PR"``), then a name. Where the geocoder names a city for an area code, the name
is that city in the form :mod:`sticky.geo` derives (``"US-IL:chicago"``), so derived and
listed keys agree. ``tests/test_geo.py`` checks the table against the installed
libphonenumber: every listed area code is known to it and is geographic, each is in one
complex only, and the geocoder's state or province is the same for every member and
matches the key.

To add an overlay: append its new area code to the existing complex, or add a complex,
then run the tests. Until libphonenumber itself knows a new area code, numbers in it get
the area code key only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

__all__ = ["CA_PROVINCES", "OVERLAY_COMPLEXES", "SUBDIVISIONS", "US_STATES"]

US_STATES: Final[Mapping[str, str]] = {
    "Alabama": "AL",
    "Alaska": "AK",
    "Arizona": "AZ",
    "Arkansas": "AR",
    "California": "CA",
    "Colorado": "CO",
    "Connecticut": "CT",
    "Delaware": "DE",
    "District of Columbia": "DC",
    "Washington D.C.": "DC",  # the geocoder's name for 202 and 771
    "Florida": "FL",
    "Georgia": "GA",
    "Hawaii": "HI",
    "Idaho": "ID",
    "Illinois": "IL",
    "Indiana": "IN",
    "Iowa": "IA",
    "Kansas": "KS",
    "Kentucky": "KY",
    "Louisiana": "LA",
    "Maine": "ME",
    "Maryland": "MD",
    "Massachusetts": "MA",
    "Michigan": "MI",
    "Minnesota": "MN",
    "Mississippi": "MS",
    "Missouri": "MO",
    "Montana": "MT",
    "Nebraska": "NE",
    "Nevada": "NV",
    "New Hampshire": "NH",
    "New Jersey": "NJ",
    "New Mexico": "NM",
    "New York": "NY",
    "North Carolina": "NC",
    "North Dakota": "ND",
    "Ohio": "OH",
    "Oklahoma": "OK",
    "Oregon": "OR",
    "Pennsylvania": "PA",
    "Rhode Island": "RI",
    "South Carolina": "SC",
    "South Dakota": "SD",
    "Tennessee": "TN",
    "Texas": "TX",
    "Utah": "UT",
    "Vermont": "VT",
    "Virginia": "VA",
    "Washington": "WA",
    "Washington State": "WA",  # the geocoder's name, to tell it from D.C.
    "West Virginia": "WV",
    "Wisconsin": "WI",
    "Wyoming": "WY",
}
"""US states and D.C. by name (and the geocoder's variants), to their postal codes."""

CA_PROVINCES: Final[Mapping[str, str]] = {
    "Alberta": "AB",
    "British Columbia": "BC",
    "British Colombia": "BC",  # sic: the geocoder's name for 257
    "Manitoba": "MB",
    "New Brunswick": "NB",
    "Newfoundland and Labrador": "NL",
    "Northwest Territories": "NT",
    "Nova Scotia": "NS",
    "Nunavut": "NU",
    "Ontario": "ON",
    "Prince Edward Island": "PE",
    "Quebec": "QC",
    "Québec": "QC",
    "Saskatchewan": "SK",
    "Yukon": "YT",
}
"""Canadian provinces and territories by name (and the geocoder's variants)."""

SUBDIVISIONS: Final[Mapping[str, Mapping[str, str]]] = {"US": US_STATES, "CA": CA_PROVINCES}
"""Subdivision names to codes, by ISO country code (libphonenumber's region code)."""

OVERLAY_COMPLEXES: Final[Mapping[str, tuple[str, ...]]] = {
    # -- United States --------------------------------------------------------------
    "US-AL:birmingham": ("205", "659"),
    "US-AL:north-alabama": ("256", "938"),
    "US-AR:east-and-south-arkansas": ("870", "327"),
    "US-CA:los-angeles": ("213", "323", "738"),
    "US-CA:west-los-angeles": ("310", "424"),
    "US-CA:san-fernando-valley": ("818", "747"),
    "US-CA:san-francisco": ("415", "628"),
    "US-CA:san-jose": ("408", "669"),
    "US-CA:east-bay": ("510", "341"),
    "US-CA:orange-county": ("714", "657"),
    "US-CA:inland-empire": ("909", "840"),
    "US-CA:desert-and-north-san-diego-county": ("760", "442"),
    "US-CA:sacramento": ("916", "279"),
    "US-CA:central-valley": ("209", "350"),
    "US-CA:north-coast": ("707", "369"),
    "US-CA:santa-barbara-and-ventura": ("805", "820"),
    "US-CO:denver": ("303", "720", "983"),
    "US-CO:western-colorado": ("970", "748"),
    "US-CT:southwestern-connecticut": ("203", "475"),
    "US-CT:northern-and-eastern-connecticut": ("860", "959"),
    "US-DC:washington": ("202", "771"),
    "US-FL:miami": ("305", "786", "645"),
    "US-FL:broward": ("954", "754"),
    "US-FL:orlando": ("407", "321", "689"),
    "US-FL:tampa": ("813", "656"),
    "US-FL:palm-beach": ("561", "728"),
    "US-FL:jacksonville": ("904", "324"),
    "US-FL:panhandle": ("850", "448"),
    "US-GA:atlanta": ("404", "770", "678", "470", "943"),
    "US-GA:north-georgia": ("706", "762"),
    "US-ID:idaho": ("208", "986"),
    "US-IL:chicago": ("312", "773", "872"),
    "US-IL:north-suburbs": ("847", "224"),
    "US-IL:west-suburbs": ("630", "331"),
    "US-IL:south-suburbs": ("708", "464"),
    "US-IL:northern-illinois": ("815", "779"),
    "US-IL:central-illinois": ("217", "447"),
    "US-IL:southern-illinois": ("618", "730"),
    "US-IN:indianapolis": ("317", "463"),
    "US-IN:southern-indiana": ("812", "930"),
    "US-KY:western-kentucky": ("270", "364"),
    "US-MA:boston": ("617", "857"),
    "US-MA:boston-suburbs": ("781", "339"),
    "US-MA:southeastern-massachusetts": ("508", "774"),
    "US-MA:northeastern-massachusetts": ("978", "351"),
    "US-MD:western-maryland": ("301", "240", "227"),
    "US-MD:baltimore": ("410", "443", "667"),
    "US-MI:oakland-county": ("248", "947"),
    "US-MO:st-louis": ("314", "557"),
    "US-MO:kansas-city": ("816", "975"),
    "US-MO:central-and-southeastern-missouri": ("573", "235"),
    "US-MS:southern-mississippi": ("601", "769"),
    "US-NC:charlotte": ("704", "980"),
    "US-NC:raleigh": ("919", "984"),
    "US-NC:greensboro": ("336", "743"),
    "US-NC:southeastern-north-carolina": ("910", "472"),
    "US-NE:eastern-nebraska": ("402", "531"),
    "US-NJ:hudson-and-bergen": ("201", "551"),
    "US-NJ:newark": ("973", "862"),
    "US-NJ:central-new-jersey": ("732", "848"),
    "US-NJ:trenton": ("609", "640"),
    "US-NV:las-vegas": ("702", "725"),
    "US-NY:new-york": ("212", "646", "332", "917", "718", "347", "929"),
    "US-NY:nassau": ("516", "363"),
    "US-NY:suffolk": ("631", "934"),  # the geocoder says "New York, NY" for 934
    "US-NY:hudson-valley": ("845", "329"),
    "US-NY:albany": ("518", "838"),
    "US-NY:syracuse": ("315", "680"),
    "US-OH:akron": ("330", "234"),
    "US-OH:toledo": ("419", "567"),
    "US-OH:columbus": ("614", "380"),
    "US-OH:southeastern-ohio": ("740", "220"),
    "US-OH:cincinnati": ("513", "283"),
    "US-OH:dayton": ("937", "326"),
    "US-OK:oklahoma-city": ("405", "572"),
    "US-OK:tulsa": ("918", "539"),
    "US-OR:portland": ("503", "971"),
    "US-OR:rest-of-oregon": ("541", "458"),
    "US-PA:philadelphia": ("215", "267", "445"),
    "US-PA:pittsburgh": ("412", "724", "878"),
    "US-PA:lehigh-valley": ("610", "484", "835"),
    "US-PA:harrisburg": ("717", "223"),
    "US-PA:scranton": ("570", "272"),
    "US-PA:central-and-northwestern-pennsylvania": ("814", "582"),
    "US-SC:columbia": ("803", "839"),
    "US-SC:charleston": ("843", "854"),
    "US-SC:greenville": ("864", "821"),
    "US-TN:nashville": ("615", "629"),
    "US-TX:dallas": ("214", "469", "972", "945"),
    "US-TX:houston": ("713", "281", "832", "346"),
    "US-TX:fort-worth": ("817", "682"),
    "US-TX:austin": ("512", "737"),
    "US-TX:san-antonio": ("210", "726"),
    "US-TX:northeast-texas": ("903", "430"),
    "US-UT:salt-lake-city": ("801", "385"),
    "US-VA:northern-virginia": ("703", "571"),
    "US-VA:western-virginia": ("540", "826"),
    "US-VA:norfolk": ("757", "948"),
    "US-VA:richmond": ("804", "686"),
    "US-WA:western-washington": ("360", "564"),
    "US-WI:madison": ("608", "353"),
    "US-WI:northern-wisconsin": ("715", "534"),
    "US-WI:green-bay": ("920", "274"),
    "US-WV:west-virginia": ("304", "681"),
    # -- Canada ---------------------------------------------------------------------
    "CA-AB:alberta": ("403", "780", "587", "825", "368"),
    "CA-BC:british-columbia": ("604", "250", "778", "236", "672", "257"),
    "CA-MB:manitoba": ("204", "431", "584"),
    "CA-NB:new-brunswick": ("506", "428"),
    "CA-NL:newfoundland-and-labrador": ("709", "879"),
    "CA-NS/PE:nova-scotia-and-prince-edward-island": ("902", "782"),
    "CA-ON:toronto": ("416", "647", "437", "942"),
    "CA-ON:greater-toronto": ("905", "289", "365", "742"),
    "CA-ON:southwestern-ontario": ("519", "226", "548", "382"),
    "CA-ON:eastern-ontario": ("613", "343", "753"),
    "CA-ON:northern-ontario": ("705", "249", "683"),
    "CA-QC:montreal": ("514", "438", "263"),
    "CA-QC:montreal-suburbs": ("450", "579", "354"),
    "CA-QC:eastern-quebec": ("418", "581", "367"),
    "CA-QC:western-quebec": ("819", "873", "468"),
    "CA-SK:saskatchewan": ("306", "639", "474"),
    # -- Other NANP countries (libphonenumber has no subdivisions there) -------------
    "DO:dominican-republic": ("809", "829", "849"),
    "JM:jamaica": ("876", "658"),
    "PR:puerto-rico": ("787", "939"),
}
"""Overlay complexes: key ``"<region key>:<name>"`` to the area codes that share it."""
