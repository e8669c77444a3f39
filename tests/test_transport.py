"""The crawl's HTTP/1.1 transport against a server that sends exactly the bytes written here: framing, keep-alive,
retries, redirects and bounds. (The crawler's tests run it against the real Distribution registry.)"""

from __future__ import annotations

import email.utils

import pytest

from gitlab_registry_usage_rest.crawl.transport import MAX_RETRY_AFTER, BodyTooLarge, Transport, TransportError
from tests.support.processes import free_port
from tests.support.scripted import Answer, ScriptedServer


def ok(body: bytes, *headers: str) -> Answer:
    head = "".join(f"{header}\r\n" for header in headers)
    return f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n{head}\r\n".encode() + body, False


def always(answer: Answer) -> ScriptedServer:
    return ScriptedServer(lambda _: answer)


def test_chunked_answers_are_joined_and_the_connection_kept() -> None:
    chunked = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5;name=value\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nTrailer: x\r\n\r\n")
    with always((chunked, False)) as server:
        transport = Transport(1, retries=0)
        try:
            first = transport.request("GET", server.url + "a", {}, 5)
            second = transport.request("GET", server.url + "b", {}, 5)
        finally:
            transport.close()
    assert first.body == second.body == b"hello world"
    assert server.connections == 1
    assert [received.line for received in server.received] == ["GET /a HTTP/1.1", "GET /b HTTP/1.1"]


def test_headers_are_read_lower_cased_and_repeated_ones_joined() -> None:
    with always(ok(b"{}", 'Link: </v2/x?n=1>; rel="next"', "Link: </other>; rel=prev", "Docker-Content-Digest: d")) \
            as server:
        transport = Transport(1, retries=0)
        try:
            response = transport.request("GET", server.url, {}, 5)
        finally:
            transport.close()
    assert response.headers["link"] == '</v2/x?n=1>; rel="next", </other>; rel=prev'
    assert response.headers["docker-content-digest"] == "d"


def test_a_kept_connection_the_server_closed_is_replaced_without_counting_as_a_retry() -> None:
    # Answers without "Connection: close", then hangs up: the next request finds the kept connection closed.
    with ScriptedServer(lambda _: (ok(b"x")[0], True)) as server:
        transport = Transport(1, retries=0)
        try:
            bodies = [transport.request("GET", server.url, {}, 5).body for _ in range(3)]
        finally:
            transport.close()
    assert bodies == [b"x", b"x", b"x"]
    assert server.connections == 3


def test_5xx_and_429_are_retried_after_backoff_or_their_capped_retry_after() -> None:
    later = email.utils.formatdate(timeval=None, usegmt=True)  # now: nothing to wait for
    answers = iter([
        b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 503 Busy\r\nRetry-After: 3600\r\nContent-Length: 0\r\n\r\n",
        f"HTTP/1.1 429 Slow\r\nRetry-After: {later}\r\nContent-Length: 0\r\n\r\n".encode(),
        b"HTTP/1.1 502 Bad\r\nContent-Length: 0\r\n\r\n",
        ok(b"done")[0],
    ])
    slept: list[float] = []
    with ScriptedServer(lambda _: (next(answers), False)) as server:
        transport = Transport(1, retries=4, backoff=0.5, sleep=slept.append)
        try:
            response = transport.request("GET", server.url, {}, 5)
        finally:
            transport.close()
    assert response.body == b"done"
    assert slept[0] == 0.0 and slept[1] == MAX_RETRY_AFTER and slept[3] == 0.5 * 2 ** 3
    assert 0.0 <= slept[2] <= 1.0


def test_when_retries_run_out_the_last_answer_is_returned() -> None:
    with always((b"HTTP/1.1 503 Busy\r\nContent-Length: 4\r\n\r\nbusy", False)) as server:
        transport = Transport(1, retries=2, sleep=lambda _: None)
        try:
            response = transport.request("GET", server.url, {}, 5)
        finally:
            transport.close()
    assert (response.status, response.body) == (503, b"busy")
    assert len(server.received) == 3


def test_a_redirect_to_another_origin_goes_without_the_authorization_header() -> None:
    with ScriptedServer(lambda _: ok(b"blob"), host="127.0.0.2") as storage:
        redirect = (f"HTTP/1.1 307 Temporary Redirect\r\nLocation: {storage.url}signed?x=1\r\n"
                    "Content-Length: 0\r\n\r\n").encode()
        with always((redirect, False)) as registry:
            transport = Transport(1, retries=0)
            try:
                unfollowed = transport.request("GET", registry.url + "v2/x/blobs/d", {"Authorization": "Bearer t"}, 5)
                followed = transport.request("GET", registry.url + "v2/x/blobs/d", {"Authorization": "Bearer t"}, 5,
                                             follow_redirects=True)
            finally:
                transport.close()
    assert unfollowed.status == 307
    assert (followed.status, followed.body, followed.url) == (200, b"blob", f"{storage.url}signed?x=1")
    assert [received.headers.get("authorization") for received in registry.received] == ["Bearer t", "Bearer t"]
    (fetched,) = storage.received
    assert fetched.line == "GET /signed?x=1 HTTP/1.1" and "authorization" not in fetched.headers


@pytest.mark.parametrize(
    ("answer", "announced"),
    [(b"HTTP/1.1 200 OK\r\nContent-Length: 10485760\r\n\r\n" + b"x" * 2048, 10485760),
     (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n" + b"x" * 2048 + b"\r\n0\r\n\r\n", None),
     (b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * 2048, None)],
    ids=["announced", "chunked", "until-closed"],
)
def test_a_body_beyond_the_bound_is_not_read_and_not_retried(answer: bytes, announced: int | None) -> None:
    with always((answer, True)) as server:
        transport = Transport(1, retries=3, sleep=lambda _: None)
        try:
            with pytest.raises(BodyTooLarge) as raised:
                transport.request("GET", server.url, {}, 5, max_body=1024)
        finally:
            transport.close()
    assert raised.value.announced == announced
    assert len(server.received) == 1


@pytest.mark.parametrize(
    ("answer", "kind"),
    [(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort", "IncompleteRead"),
     (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nshort", "IncompleteRead"),
     (b"SSH-2.0-OpenSSH\r\n\r\n", "ConnectionError"),
     (b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\nx", "ConnectionError"),
     (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\nx", "ConnectionError"),
     (b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 101 + b"\r\n", "ConnectionError"),
     (b"", "ConnectionError")],
    ids=["short-body", "short-chunk", "not-http", "conflicting-length", "negative-length", "too-many-headers",
         "hang-up"],
)
def test_a_broken_answer_is_an_error_of_its_kind(answer: bytes, kind: str) -> None:
    with always((answer, True)) as server:
        transport = Transport(1, retries=1, sleep=lambda _: None)
        try:
            with pytest.raises(TransportError) as raised:
                transport.request("GET", server.url, {}, 5)
        finally:
            transport.close()
    assert raised.value.kind == kind
    assert len(server.received) == 2, "retried once"


def test_a_silent_server_is_a_read_timeout() -> None:
    with ScriptedServer(lambda _: None) as server:
        transport = Transport(1, retries=0)
        try:
            with pytest.raises(TransportError, match=r"^ReadTimeout: .*\(read timeout=0\.2\)$"):
                transport.request("GET", server.url, {}, 0.2)
        finally:
            transport.close()


def test_nothing_listening_is_a_connection_error() -> None:
    transport = Transport(1, retries=0)
    with pytest.raises(TransportError, match="^ConnectionError: connecting to 127.0.0.1:"):
        transport.request("GET", f"http://127.0.0.1:{free_port()}/", {}, 5)


@pytest.mark.parametrize("value", ["a\r\nX-Injected: 1", "a\nb", "a\rb"], ids=["crlf", "lf", "cr"])
def test_a_header_value_with_a_line_break_is_refused_before_anything_is_sent(value: str) -> None:
    with always(ok(b"")) as server:
        transport = Transport(1, retries=3)
        with pytest.raises(TransportError, match="^InvalidHeader: "):
            transport.request("GET", server.url, {"Authorization": value}, 5)
    assert server.connections == 0


def test_a_request_target_is_percent_encoded_where_it_would_break_the_request_line() -> None:
    with always(ok(b"")) as server:
        transport = Transport(1, retries=0)
        try:
            transport.request("GET", server.url + "v2/a b/x\u00e9?last=c%2Fd#fragment", {}, 5)
        finally:
            transport.close()
    assert [received.line for received in server.received] == ["GET /v2/a%20b/x%C3%A9?last=c%2Fd HTTP/1.1"]
    assert server.received[0].headers["host"] == f"127.0.0.1:{server.port}"


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/", "http://user:secret@127.0.0.1/", "http:///x",
                                 "http://127.0.0.1:99999/"], ids=["scheme", "credentials", "no-host", "port"])
def test_urls_the_crawl_never_makes_are_refused_without_a_request(url: str) -> None:
    with pytest.raises(TransportError, match="^InvalidURL: "):
        Transport(1, retries=3).request("GET", url, {}, 5)


def test_bytes_left_over_after_an_answer_are_never_read_as_the_next_answer() -> None:
    # A body one byte shorter than the bytes sent, then a whole forged answer in the same write.
    forged = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nreHTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged"
    answers = iter([(forged, False), ok(b"real")])
    with ScriptedServer(lambda _: next(answers)) as server:
        transport = Transport(1, retries=0)
        try:
            first = transport.request("GET", server.url + "a", {}, 5)
            second = transport.request("GET", server.url + "b", {}, 5)
        finally:
            transport.close()
    assert (first.body, second.body) == (b"re", b"real")
    assert server.connections == 2, "the connection holding unasked bytes was closed, not reused"


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive, close\r\n\r\nok",
], ids=["switching-protocols", "length-and-chunked", "close-in-a-list"])
def test_a_connection_whose_framing_is_in_doubt_is_not_kept(answer: bytes) -> None:
    with always((answer, False)) as server:
        transport = Transport(1, retries=0)
        try:
            for _ in range(2):
                transport.request("GET", server.url, {}, 5)
        finally:
            transport.close()
    assert server.connections == 2


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 200 OK\r\nContent-Length: " + b"1" * 4301 + b"\r\n\r\nx",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n+5\r\nhello\r\n0\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\n" * 11 + b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
], ids=["4301-digit-length", "0x-chunk-size", "signed-chunk-size", "endless-100-continue"])
def test_an_answer_pythons_int_or_a_loop_would_choke_on_is_a_transport_error(answer: bytes) -> None:
    with always((answer, True)) as server:
        transport = Transport(1, retries=0)
        try:
            with pytest.raises(TransportError) as raised:
                transport.request("GET", server.url, {}, 5)
        finally:
            transport.close()
    assert raised.value.kind == "ConnectionError"


@pytest.mark.parametrize("location", ["http://a..b/blob", "http://" + "x" * 64 + ".example/blob",
                                      "http://127.0.0.1:" + "9" * 5000 + "/blob"])
def test_a_redirect_to_a_host_or_port_that_cannot_be_is_an_invalid_url(location: str) -> None:
    redirect = f"HTTP/1.1 307 Temporary Redirect\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n".encode()
    with always((redirect, False)) as server:
        transport = Transport(1, retries=2, sleep=lambda _: None)
        try:
            with pytest.raises(TransportError) as raised:
                transport.request("HEAD", server.url, {}, 5, follow_redirects=True)
        finally:
            transport.close()
    assert raised.value.kind == "InvalidURL"
    assert len(server.received) == 1, "not retried"
