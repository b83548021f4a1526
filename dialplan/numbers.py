"""Phone numbers as a provider writes them: the forms of one number, and the form to send.

A provider may deliver 14070's geographic number as +31701234567, 0031701234567,
31701234567 or 0701234567, and may want the numbers we send (the dialled citizen, our
caller ID) in one of those forms. Short numbers (14070, 112) have no national form and are
sent as they are.
"""

from __future__ import annotations

from typing import Literal

NumberFormat = Literal["national", "e164", "international"]


def to_e164(number: str, country_code: str = "31") -> str:
    """+<country><number> for a national (0...) or international (00..., +...) number;
    a short number (no leading 0 or +) is returned unchanged."""
    if number.startswith("+"):
        return number
    if number.startswith("00"):
        return "+" + number[2:]
    if number.startswith("0"):
        return f"+{country_code}{number[1:]}"
    return number


def formatted(number: str, number_format: NumberFormat, country_code: str = "31") -> str:
    """The number in the form the provider wants."""
    e164 = to_e164(number, country_code)
    if not e164.startswith("+"):
        return number  # a short number
    if number_format == "e164":
        return e164
    if number_format == "international":
        return "00" + e164[1:]
    domestic = f"+{country_code}"
    return "0" + e164[len(domestic) :] if e164.startswith(domestic) else "00" + e164[1:]


def forms(number: str, country_code: str = "31") -> list[str]:
    """Every form in which a provider may deliver this number, the given one first."""
    e164 = to_e164(number, country_code)
    if not e164.startswith("+"):
        # A short number such as 14070 may also arrive with the country code in front.
        e164 = f"+{country_code}{number}"
        national = number
    else:
        domestic = f"+{country_code}"
        national = "0" + e164[len(domestic) :] if e164.startswith(domestic) else ""
    found = [number, e164, "00" + e164[1:], e164[1:], national]
    return list(dict.fromkeys(form for form in found if form))


def main_number_forms(dids: list[str], main_number: str, country_code: str = "31") -> list[str]:
    """Every number besides the main number itself that means "the main number" on the
    trunk: each configured DID in each of its forms. The dialplan sends them to the menu;
    the call tracker counts them as calls to the main number."""
    numbers = [form for did in dids for form in forms(did, country_code)]
    return [number for number in dict.fromkeys(numbers) if number != main_number]
