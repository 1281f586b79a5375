"""Resident ID (GB 11643) checks shared by staging and the generator, through python-stdnum.

python-stdnum quirks handled here once: ``calc_check_digit`` expects the number
*with* a placeholder check digit; ``is_valid`` also checks the area code existed
in the year of birth and raises ``KeyError`` for some codes in its place table.
"""

from __future__ import annotations

import functools

from stdnum.cn import ric


def check_digit(body17: str) -> str:
    """The check character of a 17-digit body."""
    return str(ric.calc_check_digit(body17 + "0"))


def is_valid_id(number: str) -> bool:
    """python-stdnum's full check (length, checksum, birth date, area code in its year)."""
    try:
        return bool(ric.is_valid(number))
    except KeyError:
        return False


@functools.cache
def area_existed(area: str, year: int) -> bool:
    """Did ``area`` exist in ``year`` (python-stdnum's place table)? Cached: the lookup is slow."""
    body = f"{area}{year:04d}0601001"
    return is_valid_id(body + check_digit(body))
