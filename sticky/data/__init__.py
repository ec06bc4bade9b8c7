"""Data tables shipped with sticky (plain Python modules, so they ship with the code).

- :mod:`sticky.data.nanp`: NANP overlay complexes and the names of US states and Canadian
  provinces as libphonenumber's geocoder spells them; used by :mod:`sticky.geo` for the
  ``overlay`` and ``region`` geomatch tiers.
"""
