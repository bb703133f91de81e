"""The API's content negotiation takes shortcuts for the common cases; it must
always choose what DRF's own negotiation chooses."""

import pytest
from django.test import RequestFactory
from rest_framework.exceptions import NotAcceptable
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.parsers import JSONParser
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request

from feedback.api.negotiation import (
    ContentNegotiation,
    FormBodyParser,
    JSONBodyParser,
    ResultXMLRenderer,
    TextXMLParser,
    TextXMLRenderer,
    XMLParser,
)

RENDERER_SETS = [
    [JSONRenderer()],
    [JSONRenderer(), ResultXMLRenderer(), TextXMLRenderer()],
    [ResultXMLRenderer(), JSONRenderer()],
]
PARSER_SETS = [
    [JSONBodyParser()],
    [JSONBodyParser(), FormBodyParser(), XMLParser(), TextXMLParser()],
    [XMLParser(), JSONParser()],
]
ACCEPTS = [
    None,
    "*/*",
    "",
    "application/json",
    "application/xml",
    "text/xml",
    "application/json; indent=4",
    "application/*",
    "text/html",
    "application/xml, application/json;q=0.5",
    "text/html, */*;q=0.1",
]
QUERIES = ["", "event_id=abc", "format=json", "format=xml", "format=", "format=csv"]
CONTENT_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    "application/xml",
    "text/xml",
    "application/x-www-form-urlencoded",
    "text/plain",
    "",
]


def request(accept: str | None, query: str = "", content_type: str = "") -> Request:
    headers = {} if accept is None else {"HTTP_ACCEPT": accept}
    path = f"/feedback?{query}" if query else "/feedback"
    return Request(
        RequestFactory().post(path, b"", content_type=content_type, **headers)
    )


def choice(negotiation, *args):
    try:
        renderer, media_type = negotiation.select_renderer(*args)
    except NotAcceptable:
        return "406"
    except Exception as exc:  # Http404 for an unknown ?format=
        return type(exc).__name__
    return type(renderer).__name__, media_type


@pytest.mark.parametrize("renderers", RENDERER_SETS)
@pytest.mark.parametrize("accept", ACCEPTS)
@pytest.mark.parametrize("query", QUERIES)
def test_the_renderer_is_drfs_choice(renderers, accept, query):
    ours = choice(ContentNegotiation(), request(accept, query), renderers)
    drfs = choice(DefaultContentNegotiation(), request(accept, query), renderers)

    assert ours == drfs


@pytest.mark.parametrize("suffix", ["json", "xml"])
def test_a_format_suffix_is_drfs_choice(suffix):
    renderers = RENDERER_SETS[1]
    ours = choice(ContentNegotiation(), request(None), renderers, suffix)
    drfs = choice(DefaultContentNegotiation(), request(None), renderers, suffix)

    assert ours == drfs


@pytest.mark.parametrize("parsers", PARSER_SETS)
@pytest.mark.parametrize("content_type", CONTENT_TYPES)
def test_the_parser_is_drfs_choice(parsers, content_type):
    ours = ContentNegotiation().select_parser(
        request(None, content_type=content_type), parsers
    )
    drfs = DefaultContentNegotiation().select_parser(
        request(None, content_type=content_type), parsers
    )

    assert ours is drfs
