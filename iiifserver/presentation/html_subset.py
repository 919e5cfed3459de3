"""Text values of descriptions made safe for the Presentation API 3.0 rules on HTML markup.

Owns: the allowed HTML subset (Presentation 3.0, "HTML Markup in Property Values": tags ``a b br i
img p small span sub sup``; ``href`` on ``a`` only when it is http(s) or mailto; ``src`` (http(s)) and
``alt`` on ``img``; no comments, processing instructions, CDATA or doctype), the HTML test (a value is
HTML when it starts with ``<`` and ends with ``>``), ``rich_text`` for the properties that may carry
HTML (``summary``, and the ``value`` of ``metadata`` and ``requiredStatement`` pairs) and
``plain_text`` for all the others (labels above all), which may carry none.
Must not know: files, the description format, HTTP, iiif_prezi3.

Built on the standard library's ``html.parser`` (a tokenizer that follows the HTML5 rules browsers
use, so what it calls a tag is what a browser would): every token is re-emitted from what we
allow, never copied, so nothing the parser did not understand reaches the output.
"""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

ALLOWED_TAGS = frozenset({"a", "b", "br", "i", "img", "p", "small", "span", "sub", "sup"})
VOID_TAGS = frozenset({"br", "img"})
# Elements whose content is code or hidden text, not prose: dropped with their content.
DROPPED_WITH_CONTENT = frozenset(
    {"script", "style", "template", "noscript", "iframe", "object", "embed", "svg", "math", "textarea", "title", "xmp"}
)
HREF_SCHEMES = ("http:", "https:", "mailto:")
SRC_SCHEMES = ("http:", "https:")
URL_ATTRIBUTES = {("a", "href"): HREF_SCHEMES, ("img", "src"): SRC_SCHEMES}
# Browsers skip ASCII whitespace and control characters anywhere in a scheme ("java\tscript:").
_IGNORED_IN_URL = re.compile(r"[\x00-\x20\x7f]+")
_MARKUP = re.compile(r"<[A-Za-z/!?]")


def is_html(text: str) -> bool:
    """The spec's test: a value is HTML when its first character is ``<`` and its last ``>``."""
    return text.startswith("<") and text.endswith(">")


def rich_text(text: str) -> str:
    """A value of a property that may hold HTML, made safe.

    Plain text with no markup stays as written. Otherwise it is cleaned to the allowed subset,
    well-formed (as XML: tags balanced, void tags self-closed, only XML's own entities), and wrapped
    in ``<span>`` when the result would not start with ``<`` and end with ``>``, so that clients
    render it as the HTML the author wrote instead of showing its tags.
    """
    if not is_html(text) and not _MARKUP.search(text):
        return text
    cleaned = _Sanitiser.run(text)
    if not cleaned.strip():
        return ""
    return cleaned if is_html(cleaned) else f"<span>{cleaned}</span>"


def plain_text(text: str) -> str:
    """A value of a property that must not hold HTML (a label): tags and comments are removed.

    Text without markup stays exactly as written (``x < y`` and ``AT&T`` are text). Removal repeats
    until nothing more is found, so fragments cannot join into a new tag (``<<b>script>``); entities
    are left as written, so ``&lt;script&gt;`` stays those characters and never becomes a tag.
    """
    for _ in range(8):
        if not _MARKUP.search(text):
            return text
        stripped = _Stripper.run(text)
        if stripped == text:
            return text  # what looks like markup is text to a browser too ("a </ b")
        text = stripped
    return text.replace("<", "\N{SINGLE LEFT-POINTING ANGLE QUOTATION MARK}")  # still nesting: give up on it


def _url_allowed(value: str, schemes: tuple[str, ...]) -> bool:
    compact = _IGNORED_IN_URL.sub("", value).lower()
    return compact.startswith(schemes)


class _Sanitiser(HTMLParser):
    """Re-emits the allowed subset: allowed tags with allowed attributes, text escaped."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)  # entities decoded here, re-escaped on output
        self.out: list[str] = []
        self.open: list[str] = []  # allowed tags open in the output, innermost last
        self.skipping: list[str] = []  # dropped elements whose content is being skipped

    @classmethod
    def run(cls, text: str) -> str:
        parser = cls()
        parser.feed(text)
        parser.close()
        parser.out.extend(f"</{tag}>" for tag in reversed(parser.open))
        return "".join(parser.out)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.skipping:
            if tag in DROPPED_WITH_CONTENT:
                self.skipping.append(tag)
            return
        if tag in DROPPED_WITH_CONTENT:
            self.skipping.append(tag)
            return
        if tag not in ALLOWED_TAGS:
            return  # the tag goes, its text stays
        kept = "".join(f' {name}="{html.escape(value)}"' for name, value in self._attributes(tag, attrs))
        if tag in VOID_TAGS:
            self.out.append(f"<{tag}{kept}/>")
        else:
            self.out.append(f"<{tag}{kept}>")
            self.open.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in VOID_TAGS:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if self.skipping:
            if tag == self.skipping[-1]:
                self.skipping.pop()
            return
        if tag not in self.open:
            return  # a stray end tag: dropped
        while self.open:  # close what was left open inside it, so the output stays well-formed
            inner = self.open.pop()
            self.out.append(f"</{inner}>")
            if inner == tag:
                break

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.out.append(html.escape(data, quote=False))

    # Comments, declarations (doctype, CDATA) and processing instructions are dropped: the default
    # handlers of HTMLParser do nothing with them.

    @staticmethod
    def _attributes(tag: str, attrs: list[tuple[str, str | None]]) -> list[tuple[str, str]]:
        kept: list[tuple[str, str]] = []
        seen: set[str] = set()
        for name, value in attrs:
            if value is None or name in seen:
                continue
            schemes = URL_ATTRIBUTES.get((tag, name))
            if schemes is not None and _url_allowed(value, schemes):
                kept.append((name, value.strip()))
            elif (tag, name) == ("img", "alt"):
                kept.append((name, value))
            else:
                continue
            seen.add(name)
        return kept


class _Stripper(HTMLParser):
    """Keeps text only, as written (entities not decoded); drops script/style-like content."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.out: list[str] = []
        self.skipping = 0

    @classmethod
    def run(cls, text: str) -> str:
        parser = cls()
        parser.feed(text)
        parser.close()
        return "".join(parser.out)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in DROPPED_WITH_CONTENT:
            self.skipping += 1

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        pass

    def handle_endtag(self, tag: str) -> None:
        if tag in DROPPED_WITH_CONTENT and self.skipping:
            self.skipping -= 1

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.out.append(data)

    def handle_entityref(self, name: str) -> None:
        self.handle_data(f"&{name};")

    def handle_charref(self, name: str) -> None:
        self.handle_data(f"&#{name};")
