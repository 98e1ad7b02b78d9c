"""URL rules in-process: what a URL from the settings may be, how it is named, what the log filter
hides of it, and which CA bundle is used. Written for the survivors of a mutation run (README,
"Mutation testing")."""

import pytest

from url_rules import (
    HTTP_CA_VARIABLES,
    SMTP_PORTS,
    WEB_PORTS,
    UrlError,
    ca_bundle,
    check_endpoint,
    is_loopback,
    is_printable_ascii,
    parse_url,
    unusable_ca_bundle,
    url_secrets,
)


@pytest.mark.parametrize("text, message", [
    ("https://hooks.example.org/a b", "the webhook URL contains spaces or invisible characters"),
    ("https://hooks.example.org/\x07", "the webhook URL contains spaces or invisible characters"),
    ("https://hooks.example.org/\u200b", "the webhook URL contains spaces or invisible characters"),
    ("ftp://hooks.example.org/", "the webhook URL must start with https:// or http://"),
    ("https:///path", "the webhook URL names no host"),
    ("https://hooks.example.org:0/", "the webhook URL cannot be parsed: check its port (1-65535) and any [IPv6] address"),
    ("https://hooks.example.org:99999/", "the webhook URL cannot be parsed: check its port (1-65535) and any [IPv6] "
                                         "address"),
])
def test_a_url_the_run_cannot_use_is_named_without_repeating_it(text, message):
    with pytest.raises(UrlError) as refused:
        parse_url(text, "the webhook URL", WEB_PORTS)
    assert str(refused.value) == message


def test_a_url_gets_its_scheme_s_port_and_its_user_and_password_decoded():
    url = parse_url(" HTTPS://us%40er:p%3Ass@Hooks.Example.org/h ", "x", WEB_PORTS)
    assert (url.scheme, url.host, url.port, url.username, url.password) == ("https", "hooks.example.org", 443, "us@er",
                                                                            "p:ss")
    assert url.label == "hooks.example.org:443" and parse_url("http://[::1]:8080/", "x", WEB_PORTS).label == "[::1]:8080"
    assert parse_url("smtp://mail.example.org", "x", SMTP_PORTS).port == 587
    assert parse_url("https://h.example.org:1/", "x", WEB_PORTS).port == 1
    plain = parse_url("https://h.example.org/", "x", WEB_PORTS)
    assert (plain.username, plain.password) == ("", "")


def test_the_log_filter_hides_a_url_s_user_password_path_query_and_fragment_but_not_its_host():
    hidden = parse_url("https://user:pw@h.example.org/hook/abc?token=t#frag", "x", WEB_PORTS).secrets()
    assert set(hidden) == {"https://user:pw@h.example.org/hook/abc?token=t#frag", "user", "pw", "/hook/abc",
                           "token=t", "frag", "user:pw"}
    assert parse_url("https://h.example.org/", "x", WEB_PORTS).secrets() == ["https://h.example.org/"]
    assert "a@b:pw" in parse_url("https://a@b:pw@h.example.org/", "x", WEB_PORTS).secrets()   # up to the last @
    assert url_secrets("https://u:p@h.example.org/x", WEB_PORTS) == parse_url("https://u:p@h.example.org/x", "",
                                                                               WEB_PORTS).secrets()
    assert url_secrets("https://h.example.org:0/secret", WEB_PORTS) == ["https://h.example.org:0/secret"]


@pytest.mark.parametrize("host, loopback", [("localhost", True), ("LOCALHOST.", True), ("127.0.0.2", True),
                                            ("::1", True), ("10.0.0.1", False), ("example.org", False)])
def test_loopback_hosts_are_named_so(host, loopback):
    assert is_loopback(host) is loopback


def test_printable_ascii_is_space_to_tilde():
    assert is_printable_ascii(" ~azAZ09") and not is_printable_ascii("\x7f") and not is_printable_ascii("é")


def test_the_ca_bundle_is_the_first_variable_set_in_the_libraries_order(monkeypatch):
    for name in (*HTTP_CA_VARIABLES, "HTTPLIB2_CA_CERTS"):
        monkeypatch.delenv(name, raising=False)
    assert ca_bundle() is None
    monkeypatch.setenv("SSL_CERT_FILE", "/last.pem")
    monkeypatch.setenv("CURL_CA_BUNDLE", "/second.pem")
    assert ca_bundle() == "/second.pem"
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "")
    assert ca_bundle() == "/second.pem"


def test_a_ca_bundle_that_cannot_be_used_is_named_at_start(monkeypatch, tmp_path, certificates):
    for name in (*HTTP_CA_VARIABLES, "HTTPLIB2_CA_CERTS"):
        monkeypatch.delenv(name, raising=False)
    assert unusable_ca_bundle() == ""
    authority = certificates[0]
    folder = tmp_path / "certs"
    folder.mkdir()
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "")                        # set but empty: not a bundle
    assert unusable_ca_bundle() == ""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(authority))
    monkeypatch.setenv("SSL_CERT_FILE", str(folder))                 # a folder of certificates is a capath
    assert unusable_ca_bundle() == ""
    monkeypatch.setenv("CURL_CA_BUNDLE", str(authority))              # the same file twice is checked once
    (tmp_path / "empty.pem").write_text("not a certificate\n")
    monkeypatch.setenv("HTTPLIB2_CA_CERTS", str(tmp_path / "empty.pem"))
    assert unusable_ca_bundle() == ("HTTPLIB2_CA_CERTS names a CA bundle that cannot be used ([X509: "
                                    "NO_CERTIFICATE_OR_CRL_FOUND] no certificate or crl found (_ssl.c:4154)): point it "
                                    "at a PEM file of certificates, or unset it")
    monkeypatch.setenv("HTTPLIB2_CA_CERTS", str(tmp_path / "missing.pem"))
    assert unusable_ca_bundle() == ("HTTPLIB2_CA_CERTS names a CA bundle that cannot be used (No such file or "
                                    "directory): point it at a PEM file of certificates, or unset it")


@pytest.mark.parametrize("url", ["https://sheets.example.net/", "http://127.0.0.1:8080/", "http://[::1]:9/",
                                 "http://localhost:8080/"])
def test_an_api_endpoint_is_https_or_plain_http_to_this_machine(url):
    assert check_endpoint(url, "SHEETS_API_ENDPOINT") == url


def test_an_api_endpoint_in_clear_text_elsewhere_or_unreadable_is_refused_naming_its_setting():
    with pytest.raises(UrlError) as refused:
        check_endpoint("http://graph.example.net/", "M365_GRAPH_ENDPOINT")
    assert str(refused.value) == ("M365_GRAPH_ENDPOINT must be an https:// URL (plain http only to this machine): a "
                                  "token would travel in clear text")
    with pytest.raises(UrlError, match="GMAIL_API_ENDPOINT"):
        check_endpoint("not a url", "GMAIL_API_ENDPOINT")
