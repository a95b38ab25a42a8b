"""Kubernetes value syntax, each as a regular expression (for OpenAPI patterns and CEL
`matches`), a CEL expression and a Python predicate that decide the same thing.

Transcribed from k8s.io/apimachinery v0.36.3 (pkg/api/validate/content: IsLabelKey,
IsLabelValue, IsDNS1123Subdomain; pkg/util/validation: IsConfigMapKey, IsRelaxedEnvVarName)
and k8s.io/apimachinery/pkg/api/resource (ParseQuantity), which core/v1 validation calls from
Go code that no OpenAPI schema carries. Each regex is written for both RE2 (Go, CEL) and
Python's `re`: no lookaround, no backreferences; the quote is \\x27 so that the regex fits in
a CEL raw string.

Pure: no I/O.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS_SUBDOMAIN = rf"{DNS_LABEL}(\.{DNS_LABEL})*"
# The name part of a label key: at most 63 characters, so the bound is inside the regex.
LABEL_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
LABEL_KEY = rf"({DNS_SUBDOMAIN}/)?{LABEL_NAME}"
# Annotation keys are checked lowercased (ValidateAnnotations), so their prefix may hold capitals.
CASELESS_DNS_LABEL = r"[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?"
ANNOTATION_KEY = rf"({CASELESS_DNS_LABEL}(\.{CASELESS_DNS_LABEL})*/)?{LABEL_NAME}"
LABEL_VALUE = rf"({LABEL_NAME})?"
# A key in a ConfigMap or Secret; ".", ".." and "..x" are refused too (Go's hasChDirPrefix).
CONFIG_KEY = r"\.?[-_a-zA-Z0-9][-._a-zA-Z0-9]*"
# Printable ASCII but "=" (IsRelaxedEnvVarName, GA since 1.34).
RELAXED_ENV_NAME = r"[ -<>-~]+"
# A DNS subdomain prefix is at most 253 characters: the "/" of a key sits at index 253 or less.
MAX_PREFIX = 253
MAX_LABEL_KEY = MAX_PREFIX + 1 + 63
MAX_LABEL_VALUE = 63
MAX_NAME = 253


def anchored(regex: str) -> str:
    """The regex as an OpenAPI pattern or CEL `matches` argument (both search, not match)."""
    return f"^{regex}$"


def _full(regex: str) -> re.Pattern[str]:
    return re.compile(regex)


def go_search(pattern: str, value: str) -> bool:
    """Go's regexp MatchString (OpenAPI `pattern`, CEL `matches`) in Python: a search where a
    final `$` is the end of the text (Python's `$` also matches before a final newline)."""
    if pattern.endswith("$") and not pattern.endswith(r"\$"):
        pattern = pattern[:-1] + r"\Z"
    return re.search(pattern, value) is not None


_LABEL_KEY = _full(LABEL_KEY)
_ANNOTATION_KEY = _full(ANNOTATION_KEY)
_LABEL_VALUE = _full(LABEL_VALUE)


def cel_label_key(expr: str) -> str:
    """CEL: is `expr` (a string) a label key (IsQualifiedName)?"""
    return f"({expr}.matches(r'{anchored(LABEL_KEY)}') && {expr}.indexOf('/') <= {MAX_PREFIX})"


def cel_annotation_key(expr: str) -> str:
    return f"({expr}.matches(r'{anchored(ANNOTATION_KEY)}') && {expr}.indexOf('/') <= {MAX_PREFIX})"


def is_label_key(value: str) -> bool:
    return _LABEL_KEY.fullmatch(value) is not None and value.find("/") <= MAX_PREFIX


def is_annotation_key(value: str) -> bool:
    return _ANNOTATION_KEY.fullmatch(value) is not None and value.find("/") <= MAX_PREFIX


def is_label_value(value: str) -> bool:
    return _LABEL_VALUE.fullmatch(value) is not None


KEY_FORMAT = (
    "an optional DNS subdomain prefix and '/', then at most 63 alphanumerics, '-', '_' or '.', "
    "starting and ending with an alphanumeric (e.g. example.com/my-key)"
)

# -- quantities -------------------------------------------------------------------------------

# resource.Quantity: <sign><number><suffix>; the exponent of 1e3 is an integer (Go parses it
# with strconv.ParseInt, although kubebuilder's pattern admits a decimal one).
_QUANTITY = re.compile(
    r"([+-]?)([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:(Ki|Mi|Gi|Ti|Pi|Ei)|([numkMGTPE]?)|[eE]([+-]?[0-9]+))"
)
_BINARY = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
INT64_MAX = 2**63 - 1


def parse_quantity(value: int | str) -> Decimal | None:
    """The exact value of a Kubernetes quantity (an int or a string), or None if it is not one:
    what CEL's isQuantity()/quantity() accept."""
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    if not isinstance(value, str):
        return None
    found = _QUANTITY.fullmatch(value)
    if found is None:
        return None
    sign, number, binary, decimal, exponent = found.groups()
    try:
        magnitude = Decimal(number)
    except InvalidOperation:  # pragma: no cover - the regex admits only decimal numbers
        return None
    if binary:
        magnitude *= Decimal(2) ** _BINARY[binary]
    elif exponent is not None:
        magnitude = magnitude.scaleb(int(exponent))
    else:
        magnitude = magnitude.scaleb(_DECIMAL[decimal or ""])
    return -magnitude if sign == "-" else magnitude


def is_integer_quantity(value: Decimal) -> bool:
    """CEL's quantity.isInteger(): a whole number that fits an int64."""
    return value == value.to_integral_value() and abs(value) <= INT64_MAX
