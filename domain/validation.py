"""Input cleaning shared by every operation: lengths, characters, emails, addresses.

Everything a client sends is checked here before it reaches the database, so a
bad value fails with BAD_USER_INPUT naming the field, and nothing is written.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from typing import Any

import pycountry

from domain.errors import BadUserInput

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_EMAIL = re.compile(rf"^[^@\s]{{1,64}}@{_LABEL}(?:\.{_LABEL})+$")
_PHONE = re.compile(r"^\+?[0-9 ()./-]{3,40}$")
_POSTAL = re.compile(r"^[A-Za-z0-9 -]{2,12}$")


def clean_text(value: Any, field: str, *, max_length: int, required: bool = True) -> str | None:
    """Trimmed text without control characters; None for an optional empty value."""
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise BadUserInput(f"{field} is required.", field=field)
        return None
    if not isinstance(value, str):
        raise BadUserInput(f"{field} must be text.", field=field)
    text = unicodedata.normalize("NFC", value.strip())
    if len(text) > max_length:
        raise BadUserInput(f"{field} may have at most {max_length} characters.", field=field)
    if any(unicodedata.category(ch) == "Cc" and ch not in "\n\t" for ch in text):
        raise BadUserInput(f"{field} contains control characters.", field=field)
    return text


_HIDDEN = frozenset({"Cc", "Cf", "Zl", "Zp"})


def visible_name(text: str) -> str:
    """Without control, bidi-override (U+202E makes `exe.stl` show as `lts.exe`) and other
    invisible format characters: what a person reads is what the name is."""
    return "".join(char for char in text if unicodedata.category(char) not in _HIDDEN)


def clean_name(value: Any, field: str, max_length: int = 100) -> str:
    text = clean_text(value, field, max_length=max_length)
    assert text is not None
    if "\n" in text or "\t" in text:
        raise BadUserInput(f"{field} must be a single line.", field=field)
    return text


def clean_email(value: Any, field: str = "email") -> str:
    text = clean_name(value, field, max_length=254)
    if not _EMAIL.match(text):
        raise BadUserInput("This is not a valid email address.", field=field)
    # Case-insensitive and unique: store one canonical spelling.
    return text.casefold()


def clean_phone(value: Any, field: str = "phone") -> str | None:
    text = clean_text(value, field, max_length=40, required=False)
    if text is not None and not _PHONE.match(text):
        raise BadUserInput("This is not a valid phone number.", field=field)
    return text


def clean_address(value: Mapping[str, Any] | None, field: str, *, required: bool) -> dict | None:
    if value is None:
        if required:
            raise BadUserInput(f"{field} is required.", field=field)
        return None
    line1 = clean_name(value.get("line1"), f"{field}.line1", 200)
    line2 = clean_text(value.get("line2"), f"{field}.line2", max_length=200, required=False)
    postal = clean_name(value.get("postal_code"), f"{field}.postalCode", 12)
    if not _POSTAL.match(postal):
        raise BadUserInput("This is not a valid postal code.", field=f"{field}.postalCode")
    city = clean_name(value.get("city"), f"{field}.city", 100)
    country = clean_name(value.get("country"), f"{field}.country", 2).upper()
    if len(country) != 2 or pycountry.countries.get(alpha_2=country) is None:
        raise BadUserInput(
            "country must be an ISO 3166-1 alpha-2 code such as DE.", field=f"{field}.country"
        )
    return {
        "line1": line1,
        "line2": line2,
        "postal_code": postal,
        "city": city,
        "country": country,
    }
