"""Tests for iiifserver.presentation.html_subset: the Presentation 3.0 HTML subset kept in summaries and
metadata values, everything else removed (XSS vectors included), labels as plain text, and the
"starts with < and ends with >" rule; then the same rules applied by the description parser."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from iiifserver.presentation.description import parse_object
from iiifserver.presentation.html_subset import ALLOWED_TAGS, is_html, plain_text, rich_text

# (input, expected rich_text output)
RICH = [
    # kept as written
    ("<p>A short <b>summary</b> of the resource.</p>", "<p>A short <b>summary</b> of the resource.</p>"),
    ("plain text, no markup", "plain text, no markup"),
    ("x < y and y > z", "x < y and y > z"),
    ("AT&T", "AT&T"),
    ("<span>a<br>b</span>", "<span>a<br/>b</span>"),
    (
        "<p><small>s</small><sub>1</sub><sup>2</sup><i>i</i></p>",
        "<p><small>s</small><sub>1</sub><sup>2</sup><i>i</i></p>",
    ),
    # script and style go with their content
    ("<script>alert(1)</script>", ""),
    ("<p>a<script>alert(1)</script>b</p>", "<p>ab</p>"),
    ("<p>a<style>p{color:red}</style>b</p>", "<p>ab</p>"),
    ("<p>a<SCRIPT SRC=//evil.js></SCRIPT>b</p>", "<p>ab</p>"),
    ("<p>a<iframe src=https://evil>text</iframe>b</p>", "<p>ab</p>"),
    ("<p>a<svg><script>alert(1)</script></svg>b</p>", "<p>ab</p>"),
    ("<p>open <script>alert(1)", "<p>open </p>"),
    # other tags go, their text stays
    ("<div><p>x</p></div>", "<p>x</p>"),
    ("<p><u>under</u> <em>em</em></p>", "<p>under em</p>"),
    ("<form action=x><input value=y></form><p>z</p>", "<p>z</p>"),
    # attributes: only href on a, src and alt on img
    ('<p onclick="alert(1)" style="x" class="c">t</p>', "<p>t</p>"),
    ("<img src=x onerror=alert(1)>", "<img/>"),
    (
        '<img src="https://example.org/i.png" alt="A" title="t" onload="x">',
        '<img src="https://example.org/i.png" alt="A"/>',
    ),
    ('<img src="data:image/svg+xml,<svg onload=alert(1)>">', "<img/>"),
    (
        '<a href="https://example.org/?a=1&amp;b=2" target="_blank">l</a>',
        '<a href="https://example.org/?a=1&amp;b=2">l</a>',
    ),
    ('<a href="mailto:x@example.org">m</a>', '<a href="mailto:x@example.org">m</a>'),
    ('<a href="javascript:alert(1)">x</a>', "<a>x</a>"),
    ('<a href="JaVaScRiPt:alert(1)">x</a>', "<a>x</a>"),
    ('<a href="  javascript:alert(1)">x</a>', "<a>x</a>"),
    ('<a href="java\tscript:alert(1)">x</a>', "<a>x</a>"),
    ('<a href="java&#x09;script:alert(1)">x</a>', "<a>x</a>"),
    ('<a href="&#106;avascript:alert(1)">x</a>', "<a>x</a>"),
    ('<a href="vbscript:x">x</a>', "<a>x</a>"),
    ('<a href="data:text/html,<script>alert(1)</script>">x</a>', "<a>x</a>"),
    ('<a href="/relative">x</a>', "<a>x</a>"),
    ('<a href="//evil.example/">x</a>', "<a>x</a>"),
    ('<a href="https://ok.example/" href="javascript:x">x</a>', '<a href="https://ok.example/">x</a>'),
    (
        '<a href=https://example.org/"onmouseover="alert(1)>x</a>',
        '<a href="https://example.org/&quot;onmouseover=&quot;alert(1)">x</a>',
    ),
    ("<img alt='\"><script>alert(1)</script>'>", '<img alt="&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"/>'),
    # case: tags and attribute names are case-insensitive
    ('<P><B>x</B><A HREF="HTTPS://E.ORG/">y</A></P>', '<p><b>x</b><a href="HTTPS://E.ORG/">y</a></p>'),
    # comments, CDATA, processing instructions, doctype: removed
    ("<p>a<!-- secret --></p>", "<p>a</p>"),
    ("<p>a<![CDATA[<script>alert(1)</script>]]>b</p>", "<p>ab</p>"),
    ("<?xml version='1.0'?><p>x</p>", "<p>x</p>"),
    ("<!DOCTYPE html><p>x</p>", "<p>x</p>"),
    ("<p>a<!--><script>alert(1)</script>--></p>", "<p>a</p>"),
    # entities: decoded, then only XML's own written back (well-formed XML)
    ("<p>caf&eacute; &amp; &lt;script&gt; &nbsp;x</p>", "<p>café &amp; &lt;script&gt; \u00a0x</p>"),
    ("<p>&#60;script&#62;alert(1)&#60;/script&#62;</p>", "<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>"),
    # nesting: unclosed tags closed, stray end tags dropped, crossed tags made to nest
    ("<p>one <b>two <i>three</p>", "<p>one <b>two <i>three</i></b></p>"),
    ("<p>x</b></i></p>", "<p>x</p>"),
    ("<b><i>x</b></i>", "<b><i>x</i></b>"),
    ("<p>a</p><p>b</p>", "<p>a</p><p>b</p>"),
    ("<br/><br>", "<br/><br/>"),
    ("<span/>", "<span></span>"),
    # not starting with '<' or not ending with '>' but holding markup: wrapped, so it is HTML
    ("Printed by <i>Aldus</i> in 1499", "<span>Printed by <i>Aldus</i> in 1499</span>"),
    ("<b>Bold</b> then text", "<span><b>Bold</b> then text</span>"),
    ("Text <script>alert(1)</script>", "<span>Text </span>"),
    ("<3 love it>", "<span>&lt;3 love it&gt;</span>"),
    ("<<b>script>alert(1)<</b>/script>", "<span>&lt;<b>script&gt;alert(1)&lt;</b>/script&gt;</span>"),
]


@pytest.mark.parametrize(("raw", "expected"), RICH)
def test_rich_text(raw: str, expected: str) -> None:
    assert rich_text(raw) == expected


@pytest.mark.parametrize("raw", [raw for raw, _ in RICH])
def test_rich_text_output_is_safe_well_formed_and_stable(raw: str) -> None:
    out = rich_text(raw)
    assert rich_text(out) == out  # sanitising twice changes nothing
    if out == raw and not is_html(raw) and "<" in raw:
        return  # plain text with a literal '<' (not markup) stays text
    lowered = out.lower()
    for bad in ("<script", "<style", "<iframe", "<svg", "javascript:", "onerror", "onclick", "onload", "<!--"):
        assert bad not in lowered, (raw, out)
    if out and is_html(out):
        root = ET.fromstring(f"<root>{out}</root>")  # well-formed XML, as the spec requires
        for element in root.iter():
            assert element.tag == "root" or element.tag in ALLOWED_TAGS
            allowed = {"a": {"href"}, "img": {"src", "alt"}}.get(element.tag, set())
            assert set(element.attrib) <= allowed
            for name in ("href", "src"):
                if name in element.attrib:
                    assert element.attrib[name].lower().startswith(("http:", "https:", "mailto:"))


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("The Book of Hours", "The Book of Hours"),
        ("x < y", "x < y"),
        ("AT&T &amp; co", "AT&T &amp; co"),  # plain text has no entities: left as written
        ("&lt;script&gt;alert(1)&lt;/script&gt;", "&lt;script&gt;alert(1)&lt;/script&gt;"),
        ("<b>Bold</b> title", "Bold title"),
        ("<p>Paragraph</p>", "Paragraph"),
        ("Title<script>alert(1)</script>", "Title"),
        ("Title<style>x</style>", "Title"),
        ("<img src=x onerror=alert(1)>Title", "Title"),
        ("<IMG SRC=x ONERROR=alert(1)>", ""),
        ("Title <!-- note -->", "Title "),
        ("<<b>script>alert(1)<</b>/script>", ""),  # fragments that join into a tag: removed too
        ("<<<b>b>b>script>x", "script>x"),
        ("a </ b", "a </ b"),
    ],
)
def test_plain_text(raw: str, expected: str) -> None:
    assert plain_text(raw) == expected
    assert "<script" not in plain_text(raw).lower()
    assert plain_text(plain_text(raw)) == plain_text(raw)


def test_plain_text_never_leaves_a_tag() -> None:
    vectors = [
        "<<b>script>",
        "<scr<b>ipt>alert(1)</scr</b>ipt>",
        "<<i>img src=x onerror=alert(1)>",
        "<<<b>b>b>script>x",
    ]
    for raw in vectors:
        out = plain_text(raw)
        assert "<" not in out, (raw, out)


def test_is_html_is_the_spec_rule() -> None:
    assert is_html("<p>x</p>")
    assert not is_html(" <p>x</p>")
    assert not is_html("<p>x</p> ")
    assert not is_html("x")


def test_description_parser_applies_the_rules_per_property() -> None:
    evil = "<b>B</b><script>alert(1)</script><a href='javascript:x'>L</a>"
    description = parse_object(
        {
            "label": {"en": evil},
            "summary": {"en": evil},
            "metadata": [{"label": evil, "value": evil}],
            "requiredStatement": {"label": "Attribution", "value": "<p>By <a href='https://e.org/'>E</a></p>"},
            "pages": [{"image": "p1", "label": evil, "summary": "<p>ok</p><img src=x onerror=alert(1)>"}],
            "ranges": [{"label": evil, "pages": [1]}],
            "provider": [{"id": "https://e.org/", "label": evil}],
        },
        "evil.yaml",
    )
    assert description.label == (("en", ("BL",)),)
    assert description.summary == (("en", ("<b>B</b><a>L</a>",)),)
    assert description.metadata[0].label == (("none", ("BL",)),)
    assert description.metadata[0].value == (("none", ("<b>B</b><a>L</a>",)),)
    assert description.required_statement is not None
    assert description.required_statement.value == (("none", ('<p>By <a href="https://e.org/">E</a></p>',)),)
    assert description.pages[0].label == (("none", ("BL",)),)
    assert description.pages[0].summary == (("none", ("<p>ok</p><img/>",)),)
    assert description.ranges[0].label == (("none", ("BL",)),)
    assert description.provider[0].label == (("none", ("BL",)),)


def test_a_label_that_is_only_markup_is_missing() -> None:
    from iiifserver.presentation.description import DescriptionError

    with pytest.raises(DescriptionError, match=r"metadata\[0\]\.label.*required"):
        parse_object({"pages": ["p1"], "metadata": [{"label": "<script>x</script>", "value": "v"}]}, "e.yaml")
