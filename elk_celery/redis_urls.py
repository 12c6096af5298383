"""Every Redis URL elk accepts, parsed and checked in one place.

- ``redis://``, ``rediss://`` (TLS), ``unix://``: one Redis server, read by
  redis-py's ``Redis.from_url`` (``redis://[[user]:password@]host:port/db``).
- ``redis+cluster://[[user]:password@]host:port[,host:port...]/`` and
  ``rediss+cluster://`` (TLS): a Redis Cluster, given by seed nodes (any
  reachable ones; the client learns the rest). A cluster has only db 0.
- ``redis+sentinel://[[user]:password@]host:port[,host:port...]/service_name[/db]``
  and ``rediss+sentinel://`` (TLS to the sentinels and the servers): the
  master Sentinel names for ``service_name`` (kombu's sentinel transport
  style: several sentinels, then the service). The user and password are the
  Redis servers'; ``?sentinel_username=&sentinel_password=`` are the
  sentinels' own, when they require AUTH.

Query options of the cluster and Sentinel forms: ``ssl_cert_reqs``
(``required``, ``optional``, ``none``), ``ssl_ca_certs``, ``ssl_certfile``,
``ssl_keyfile``, ``ssl_check_hostname`` (``true``/``false``), and for
Sentinel ``sentinel_username``, ``sentinel_password``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

from .errors import ConfigError

SINGLE = ("redis", "rediss", "unix")
CLUSTER = ("redis+cluster", "rediss+cluster")
SENTINEL = ("redis+sentinel", "rediss+sentinel")
SCHEMES = (*SINGLE, *CLUSTER, *SENTINEL)

#: query options of the cluster and Sentinel forms, and how each is read
_TLS_OPTIONS = ("ssl_cert_reqs", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile",
                "ssl_check_hostname")
_SENTINEL_OPTIONS = ("sentinel_username", "sentinel_password")
_CERT_REQS = ("required", "optional", "none")


def _accepted() -> str:
    forms = [f"{s}://" for s in SCHEMES]
    return ", ".join(forms[:-1]) + " or " + forms[-1]


def invalid(url: str, problem: str) -> ConfigError:
    """The one error for a bad Redis URL: what is wrong and the forms accepted."""
    return ConfigError(
        f"Redis URL {redact(url)!r} is invalid: {problem}. Use {_accepted()} "
        "(e.g. redis://host:6379/0, redis+cluster://host1:7000,host2:7001/, "
        "redis+sentinel://host1:26379,host2:26379/mymaster/0)")


@dataclass(frozen=True)
class RedisURL:
    """A parsed elk Redis URL."""

    url: str
    #: 'single' | 'cluster' | 'sentinel'
    kind: str
    tls: bool = False
    #: the seed nodes (cluster) or the sentinels (sentinel)
    hosts: tuple[tuple[str, int], ...] = ()
    service: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = None
    #: TLS options for the client (ssl_* keys of redis-py)
    tls_options: dict[str, Any] = field(default_factory=dict)
    #: the sentinels' own credentials (sentinel_username/sentinel_password)
    sentinel_auth: dict[str, str] = field(default_factory=dict)


def scheme_of(url: Any) -> str:
    return str(url).split("://", 1)[0].lower() if "://" in str(url) else ""


def is_single_server(url: Any) -> bool:
    """True for a one-server Redis URL (``redis://``, ``rediss://``,
    ``unix://``): what a Celery Redis broker URL is, and what elk uses as its
    state URL when ``elk_redis_url`` is not set."""
    return isinstance(url, str) and scheme_of(url) in SINGLE


def parse(url: Any) -> RedisURL:
    """Check ``url`` and take it apart; :class:`ConfigError` naming the problem."""
    if not isinstance(url, str) or not url:
        raise invalid(str(url), "it must be a non-empty string")
    scheme = scheme_of(url)
    if scheme not in SCHEMES:
        raise invalid(url, f"unknown scheme {scheme + '://' if scheme else '(none)'}")
    if scheme in SINGLE:
        return RedisURL(url, "single", tls=scheme == "rediss")
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise invalid(url, str(exc)) from None
    netloc = parts.netloc
    creds, _, hostlist = netloc.rpartition("@")
    username = password = None
    if creds:
        user, sep, pw = creds.partition(":")
        username = unquote(user) or None
        password = unquote(pw) if sep else None
    hosts = tuple(_host(url, h) for h in hostlist.split(",")) if hostlist else ()
    if not hosts:
        raise invalid(url, "it names no host:port")
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    allowed = _TLS_OPTIONS + (_SENTINEL_OPTIONS if scheme in SENTINEL else ())
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise invalid(url, f"unknown query option {', '.join(unknown)} "
                           f"(accepted: {', '.join(allowed)})")
    tls = scheme.startswith("rediss")
    tls_options = _tls(url, options) if tls else {}
    if not tls and any(k in options for k in _TLS_OPTIONS):
        raise invalid(url, "ssl_* options need TLS: use the rediss+ scheme")
    path = [p for p in parts.path.split("/") if p]
    if scheme in CLUSTER:
        if path not in ([], ["0"]):
            raise invalid(url, f"a cluster has only db 0, not {parts.path!r}")
        return RedisURL(url, "cluster", tls, hosts, username=username, password=password,
                        tls_options=tls_options)
    if not path or len(path) > 2:
        raise invalid(url, "name the Sentinel service after the hosts: /service_name or "
                           "/service_name/db")
    db = path[1] if len(path) == 2 else "0"
    if not db.isdigit():
        raise invalid(url, f"db {db!r} is not a number")
    auth = {k.removeprefix("sentinel_"): v for k, v in options.items() if k in _SENTINEL_OPTIONS}
    return RedisURL(url, "sentinel", tls, hosts, unquote(path[0]), int(db), username,
                    password, tls_options, auth)


def _host(url: str, item: str) -> tuple[str, int]:
    host, sep, port = item.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise invalid(url, f"{item!r} is not host:port")
    return host.strip("[]"), int(port)


def _tls(url: str, options: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k in _TLS_OPTIONS:
        if k not in options:
            continue
        v = options[k]
        if k == "ssl_cert_reqs":
            if v not in _CERT_REQS:
                raise invalid(url, f"ssl_cert_reqs={v!r}: use {', '.join(_CERT_REQS)}")
        elif k == "ssl_check_hostname":
            if v.lower() not in ("true", "false"):
                raise invalid(url, f"ssl_check_hostname={v!r}: use true or false")
            out[k] = v.lower() == "true"
            continue
        out[k] = v
    return out


def redact(url: str) -> str:
    """The URL without its passwords (``redis://user:***@host:6379/0``)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    creds, at, hostlist = parts.netloc.rpartition("@")
    if at and ":" in creds:
        creds = creds.split(":", 1)[0] + ":***"
    query = parts.query
    if "sentinel_password=" in query:
        query = "&".join("sentinel_password=***" if q.startswith("sentinel_password=") else q
                         for q in query.split("&"))
    return urlunsplit((parts.scheme, f"{creds}{at}{hostlist}", parts.path, query, parts.fragment))
