"""header_getter: one lookup for every spelling a caller may use, and the CGI rules for the
two headers WSGI does not prefix."""

from __future__ import annotations

from bleepstore.web.environ import header_getter


def test_any_case_and_underscores_find_the_header() -> None:
    get = header_getter({"HTTP_IF_MATCH": '"e"', "HTTP_X_AMZ_META_A_B": "v"})
    for name in ("If-Match", "if-match", "IF-MATCH", "if_match"):
        assert get(name) == '"e"'
    assert get("x-amz-meta-a-b") == "v"
    assert get("If-None-Match") is None


def test_content_type_empty_is_sent_content_length_empty_is_absent() -> None:
    get = header_getter({"CONTENT_TYPE": "", "CONTENT_LENGTH": ""})
    assert get("Content-Type") == ""
    assert get("Content-Length") is None
    assert header_getter({})("content-type") is None
    assert header_getter({"CONTENT_LENGTH": "5"})("Content-Length") == "5"
