"""elk_celery/redis_urls.py: the one parser of Redis URLs."""

from __future__ import annotations

import pytest

from elk_celery import ElkSettings
from elk_celery.errors import ConfigError
from elk_celery.redis_urls import is_single_server, parse, redact


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6379/0", "rediss://:pw@h:6380/1",
                                 "unix:///tmp/redis.sock?db=2"])
def test_single_server_urls_are_left_to_redis_py(url):
    got = parse(url)
    assert got.kind == "single" and got.url == url and is_single_server(url)


def test_cluster_url_names_every_seed():
    got = parse("redis+cluster://u:p%40ss@10.0.0.1:7000,10.0.0.2:7001/")
    assert got.kind == "cluster" and not got.tls
    assert got.hosts == (("10.0.0.1", 7000), ("10.0.0.2", 7001))
    assert (got.username, got.password) == ("u", "p@ss")
    assert not is_single_server("redis+cluster://h:7000/")


def test_tls_cluster_url_takes_ssl_options():
    got = parse("rediss+cluster://h:7000/?ssl_cert_reqs=required&ssl_ca_certs=/ca.pem"
                "&ssl_check_hostname=false")
    assert got.tls and got.tls_options == {"ssl_cert_reqs": "required",
                                           "ssl_ca_certs": "/ca.pem",
                                           "ssl_check_hostname": False}


def test_sentinel_url_names_sentinels_service_and_db():
    got = parse("redis+sentinel://:pw@s1:26379,s2:26380/mymaster/3"
                "?sentinel_password=spw")
    assert got.kind == "sentinel" and got.service == "mymaster" and got.db == 3
    assert got.hosts == (("s1", 26379), ("s2", 26380))
    assert got.password == "pw" and got.sentinel_auth == {"password": "spw"}
    assert parse("redis+sentinel://s1:26379/mymaster").db == 0


@pytest.mark.parametrize("url, problem", [
    ("http://127.0.0.1:6379", "unknown scheme http://"),
    ("127.0.0.1:6379", "unknown scheme (none)"),
    ("redis+cluster:///", "names no host:port"),
    ("redis+cluster://h:7000,h2/", "'h2' is not host:port"),
    ("redis+cluster://h:99999/", "'h:99999' is not host:port"),
    ("redis+cluster://h:7000/1", "a cluster has only db 0"),
    ("redis+cluster://h:7000/?foo=1", "unknown query option foo"),
    ("redis+cluster://h:7000/?ssl_cert_reqs=required", "ssl_* options need TLS"),
    ("rediss+cluster://h:7000/?ssl_cert_reqs=maybe", "ssl_cert_reqs='maybe'"),
    ("redis+sentinel://s:26379/", "name the Sentinel service"),
    ("redis+sentinel://s:26379/svc/x", "db 'x' is not a number"),
])
def test_bad_urls_say_what_is_wrong_and_what_is_accepted(url, problem):
    with pytest.raises(ConfigError) as e:
        parse(url)
    msg = str(e.value)
    assert problem in msg, msg
    assert "redis+cluster://" in msg and "redis+sentinel://" in msg and "unix://" in msg


def test_errors_and_redact_hide_passwords():
    with pytest.raises(ConfigError) as e:
        parse("redis+sentinel://:secret@s:26379/?sentinel_password=secret2")
    assert "secret" not in str(e.value)
    assert redact("redis+cluster://u:secret@a:1,b:2/") == "redis+cluster://u:***@a:1,b:2/"
    assert redact("redis://h:6379/0") == "redis://h:6379/0"


def test_settings_check_the_url_at_start():
    ElkSettings(redis_url="redis+cluster://h:7000,h:7001/")
    with pytest.raises(ConfigError) as e:
        ElkSettings(redis_url="redis+cluster://h/")
    assert "elk_redis_url" in str(e.value) and "'h' is not host:port" in str(e.value)
