"""The rules a JobQueue's `redis.url` must pass, as CEL rules for the CRD and in Python.

A URL is parsed, not pattern-matched: CEL's url() (Go's net/url) on the API server, and
urllib.parse here. What it must be:

- printable ASCII, no spaces, control characters or "#": a pasted newline or a non-breaking
  space otherwise ends up in the host name or the database number, far from the user;
- scheme redis:// or rediss://, lowercase as redis-py and arq write them;
- a host: a DNS name or IP address ([brackets] for IPv6), and at most a user name before it;
- a port, if given, in 1-65535;
- a path that is empty, "/" or "/<database index 0-15>". 0-15 are the databases a Redis
  server has unless its `databases` setting says otherwise (the default of Redis and Valkey,
  and what managed Redis services offer); Redis Cluster has database 0 only. A wider range
  would let through the common slip of a port written as a database ("redis://redis/6379"),
  which fails only at connect time with "DB index is out of range". A server configured with
  more databases is reached through urlSecretRef, whose URL the API server never sees;
- no password, in the user part or as a ?password= parameter: the CR is readable by more
  people than the Secret, so a password goes in a Secret named by redis.urlSecretRef.

Each rule is guarded so that only one message describes one mistake; the messages never
quote the URL (it may hold a password), and CEL on the parent object reports the field
without its value.

Pure: no I/O.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import unquote_plus, urlsplit

from pydantic.config import JsonDict

from arqfleet.operator.k8s_syntax import go_search

SCHEMES = ("redis://", "rediss://")
DATABASES = 16
DB_PATHS = ("", "/", *(f"/{i}" for i in range(DATABASES)))

# Printable ASCII without space and "#" (\x21-\x22, \x24-\x7e).
CHARACTERS = r"^[!-\x22$-~]+$"
# The authority: an optional user name (RFC 3986 userinfo characters, no "%"), then a host
# name or a bracketed IPv6 address, then an optional port of digits.
_HOST = r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"
AUTHORITY = (
    r"^rediss?://([-A-Za-z0-9._~!$&\x27()*+,;=:]*@)?"
    rf"({_HOST}|\[[0-9A-Fa-f.]*:[0-9A-Fa-f:.]*\])(:[0-9]*)?([/?].*)?$"
)
# A password sits between "//" (after an optional user) and "@": redis://:pw@h, redis://u:pw@h.
PASSWORD_IN_USERINFO = r"^rediss?://[^/@?#]*:[^/@?#]*@"
_BRACKETED = r"^[^/]*//[^/?]*\["

MESSAGES = {
    "characters": "redis.url must be printable ASCII without spaces, control characters or '#'",
    "scheme": "redis.url must start with redis:// or rediss://",
    "host": "redis.url must name a host, a DNS name or an IP address ([brackets] for IPv6), "
    "e.g. redis://redis.default.svc:6379/0",
    "ip": "redis.url has a bracketed host that is not an IPv6 address",
    "port": "redis.url has a port outside 1-65535",
    "path": "redis.url may end with a database index from /0 to /15 and nothing else (a "
    "server with more databases: put the URL in a Secret and use redis.urlSecretRef)",
    "password": "redis.url must not contain a password: put the whole URL in a Secret and "
    "use redis.urlSecretRef",
}

_U = "self.url"
_PARSED = f"isURL({_U})"
_PORT = f"url({_U}).getPort()"
# The rules after the first two read a URL that passed them, so one slip gets one message.
_WELL_FORMED = (
    f"{_U}.matches(r'{CHARACTERS}') && "
    f"({_U}.startsWith('redis://') || {_U}.startsWith('rediss://'))"
)


def _cel(rule: str, problem: str, guarded: bool = True) -> JsonDict:
    if guarded:
        rule = f"!({_WELL_FORMED}) || {rule}"
    return {"rule": f"!has(self.url) || {rule}", "message": MESSAGES[problem], "fieldPath": ".url"}


def cel_rules() -> list[JsonDict]:
    """The x-kubernetes-validations of the RedisSpec object (self.url is the URL)."""
    db_paths = ", ".join(f"'{p}'" for p in DB_PATHS)
    return [
        _cel(f"{_U}.matches(r'{CHARACTERS}')", "characters", guarded=False),
        _cel(
            f"{_U}.startsWith('redis://') || {_U}.startsWith('rediss://')", "scheme", guarded=False
        ),
        _cel(
            f"({_PARSED} && {_U}.matches(r'{AUTHORITY}') && url({_U}).getHostname() != '')",
            "host",
        ),
        # isIP() of the text between the brackets: the URL's own length bounds the cost.
        _cel(
            f"!{_U}.matches(r'{_BRACKETED}') || "
            f"isIP({_U}.substring({_U}.indexOf('[') + 1, {_U}.indexOf(']')))",
            "ip",
        ),
        _cel(
            f"!{_PARSED} || {_PORT} == '' || (size({_PORT}) <= 5 && int({_PORT}) >= 1 && "
            f"int({_PORT}) <= 65535)",
            "port",
        ),
        _cel(f"!{_PARSED} || url({_U}).getEscapedPath() in [{db_paths}]", "path"),
        _cel(
            f"!{_U}.matches(r'{PASSWORD_IN_USERINFO}') && "
            f"(!{_PARSED} || !('password' in url({_U}).getQuery()))",
            "password",
        ),
    ]


def _query_keys(query: str) -> set[str]:
    """The keys Go's url.ParseQuery finds: pairs holding ";" or a bad escape are skipped."""
    keys = set()
    for pair in query.split("&"):
        key = pair.split("=", 1)[0]
        if ";" in pair or re.search(r"%(?![0-9A-Fa-f]{2})", key):
            continue
        keys.add(unquote_plus(key))
    return keys


def _bad_ip(host: str) -> bool:
    """Not what Go's netip accepts as isIP(): an IPv6 address without zone, not IPv4-mapped."""
    try:
        address = ipaddress.IPv6Address(host)
    except ValueError:
        return True
    return address.ipv4_mapped is not None


def problems(url: str) -> list[str]:
    """The keys of MESSAGES this URL breaks, as the CEL rules decide."""
    if not go_search(CHARACTERS, url):
        return ["characters"]
    if not url.startswith(SCHEMES):
        return ["scheme"]
    found = []
    if go_search(PASSWORD_IN_USERINFO, url):
        found.append("password")
    if not go_search(AUTHORITY, url):
        return [*found, "host"]
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    if netloc.startswith("[") and _bad_ip(netloc[1:].partition("]")[0]):
        return [*found, "ip"]
    host_and_port = netloc.rpartition("]")[2] if netloc.startswith("[") else netloc
    port = host_and_port.partition(":")[2]  # AUTHORITY allows digits only, or nothing
    if port and not (len(port) <= 5 and 1 <= int(port) <= 65535):
        found.append("port")
    if parts.path not in DB_PATHS:
        found.append("path")
    if "password" in _query_keys(parts.query) and "password" not in found:
        found.append("password")
    return found
