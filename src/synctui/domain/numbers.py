"""Bounds on every number that comes from outside: a scenario file or a typed field.

A `Decimal` carries its own exponent, and Python keeps it as written: a
price of `1e-1000030` is a valid `Decimal`, compares greater than zero, and
silently becomes 0 in the first operation that rounds, so a fill "at that
price" invents money. An exponent of `1e-999999999` makes `int()` or a
`quantize` build a billion-digit number, a hang that Ctrl-C cannot stop.
So a number is checked once, where it enters, and refused unless it is:

- finite (no NaN, no infinity);
- at most `MAX_DIGITS` (28) digits as written: the default `Decimal`
  context keeps 28 significant digits, so more would be rounded away
  without a word (`0.50` is 2 digits, `100` is 3);
- zero, or of a size from `1e-15` up to, but not including, `1e16`
  (its adjusted exponent, the power of ten of its first digit, lies in
  `-MAX_EXPONENT..MAX_EXPONENT`). Money is already capped below `1e15`, so
  real prices, sizes, ticks, rates and leverages sit far inside; and a zero
  written as `0E-1000000` is refused too, for the same reason as a tiny number.

Every value in the shared scenarios, the tests' scenarios and fixtures and
`sample_data` has at most 7 digits and sizes from 0.005 to 250,000.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

MAX_DIGITS = 28
MAX_EXPONENT = 15


class NumberError(ValueError):
    """A number outside the bounds above; the message says which, in words."""


def bounded(value: Decimal | int | str) -> Decimal:
    """`value` as a `Decimal` within the bounds above, or `NumberError`.

    Cheap for any input: it looks at the digits and the exponent and never
    does arithmetic with them (an `int` is converted exactly; Python already
    caps how long its text may be).
    """
    if isinstance(value, bool):
        raise NumberError("must be a number, not true or false")
    if isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            raise NumberError("must be a number") from None
    else:
        number = Decimal(value)
    if not number.is_finite():
        raise NumberError("must be a finite number")
    digits = len(number.as_tuple().digits)
    if digits > MAX_DIGITS:
        raise NumberError(f"has {digits} digits; at most {MAX_DIGITS} are allowed")
    exponent = number.adjusted()
    if not number and not -MAX_EXPONENT <= exponent <= MAX_EXPONENT:
        raise NumberError("is a zero with an exponent out of range: write it 0")
    if exponent > MAX_EXPONENT:
        raise NumberError(f"is too large: numbers must be below 1e{MAX_EXPONENT + 1}")
    if exponent < -MAX_EXPONENT:
        raise NumberError(f"is too small: a number other than 0 must be at least "
                          f"1e-{MAX_EXPONENT} in size")
    return number


def is_bounded(value: Decimal) -> bool:
    """Whether `bounded` accepts `value` (for callers that show their own message)."""
    try:
        bounded(value)
    except NumberError:
        return False
    return True


def decimal_or_none(text: str | None) -> Decimal | None:
    """A stored decimal's text back as a `Decimal`; None stays None."""
    return None if text is None else Decimal(text)
