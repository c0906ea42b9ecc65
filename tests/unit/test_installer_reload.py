"""--reload-lookups: a real HTTP(S) server on 127.0.0.1; the token never shows in messages."""

from __future__ import annotations

import http.server
import shutil
import ssl
import subprocess
import threading
from urllib.parse import parse_qs, urlsplit

import pytest

from prtg_ai_installer.reload import ReloadError, reload_lookups

TOKEN = "S3CRET-api-key-0123456789"


class _Handler(http.server.BaseHTTPRequestHandler):
    status = 200
    seen: list = []

    def do_GET(self):  # noqa: N802 (http.server's name)
        type(self).seen.append(self.path)
        self.send_response(type(self).status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"OK")

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    handler = type("H", (_Handler,), {"status": 200, "seen": []})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd, handler
    httpd.shutdown()
    httpd.server_close()


def test_reload_calls_loadlookups_with_the_token(server):
    httpd, handler = server
    base = f"http://127.0.0.1:{httpd.server_address[1]}/"
    result = reload_lookups(base, TOKEN, timeout=5)
    assert result.status == 200 and TOKEN not in result.url
    [path] = handler.seen
    assert urlsplit(path).path == "/api/loadlookups.htm"
    assert parse_qs(urlsplit(path).query) == {"apitoken": [TOKEN]}


@pytest.mark.parametrize("status, hint", [(401, "API key"), (302, "login page"), (500, "HTTP 500")])
def test_refusals_are_errors_without_the_token(server, status, hint):
    httpd, handler = server
    handler.status = status
    with pytest.raises(ReloadError) as info:
        reload_lookups(f"http://127.0.0.1:{httpd.server_address[1]}", TOKEN, timeout=5)
    assert hint in str(info.value) and TOKEN not in str(info.value)
    # No chained requests exception (its text would carry the URL with the token).
    assert info.value.__cause__ is None and (info.value.__context__ is None or info.value.__suppress_context__)


def test_unreachable_core_is_an_error_without_the_token():
    with pytest.raises(ReloadError, match="could not reach") as info:
        reload_lookups("http://127.0.0.1:9", TOKEN, timeout=2)
    assert TOKEN not in str(info.value) and info.value.__suppress_context__


@pytest.mark.parametrize("url", ["ftp://core", "core.example", f"https://core/?apitoken={TOKEN}"])
def test_bad_urls_are_refused_before_any_request(url):
    with pytest.raises(ReloadError) as info:
        reload_lookups(url, TOKEN)
    assert TOKEN not in str(info.value)


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory):
    if not shutil.which("openssl"):
        pytest.skip("openssl is needed to make a test certificate")
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem")],
                   check=True, capture_output=True, timeout=60)
    return str(d / "cert.pem"), str(d / "key.pem")


def test_tls_is_verified_by_default_and_a_ca_bundle_is_honoured(self_signed, request):
    handler = type("H", (_Handler,), {"status": 200, "seen": []})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*self_signed)
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    request.addfinalizer(httpd.shutdown)
    base = f"https://127.0.0.1:{httpd.server_address[1]}"
    with pytest.raises(ReloadError, match="TLS verification") as info:
        reload_lookups(base, TOKEN, timeout=5)
    assert TOKEN not in str(info.value) and handler.seen == []
    assert reload_lookups(base, TOKEN, verify=self_signed[0], timeout=5).status == 200
    assert len(handler.seen) == 1
