"""Geomatch data: which tier keys a number has (area code, overlay, region, country).

Built in, with no data: the NANP area code. With the ``sticky[geo]`` extra
(libphonenumber's data, the ``phonenumbers`` package), the wider tiers too.
"""

from __future__ import annotations

from collections.abc import Callable

from sticky.errors import ExtraNotInstalled
from sticky.numbers import nanp_area_code
from sticky.settings import GeoMatch

__all__ = ["GeoKeys", "geo_extra_installed", "keys_function", "require_geo_extra"]

GeoKeys = tuple[str | None, str | None, str | None, str | None]
"""A number's keys in each tier, nearest first: area code, overlay, region, country."""


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
    """The built-in tier only: the NANP area code. O(1)."""
    return (nanp_area_code(number), None, None, None)


def keys_function(mode: GeoMatch) -> Callable[[str], GeoKeys]:
    """The function giving a number's tier keys under ``mode`` (not OFF)."""
    if mode is GeoMatch.AREA_CODE or (mode is GeoMatch.AUTO and not geo_extra_installed()):
        return area_code_keys
    require_geo_extra()
    return area_code_keys  # wider tiers: see the geomatch issue
