"""A mail body's own words: an HTML body as plain text, and the quoted message and signature
below a reply cut off, so the residents' grammar reads only what the resident wrote now.

Written here, on the standard library's `html.parser`: the kept reply parsers know no Russian
mail client (Яндекс, Mail.ru and Outlook in Russian write «пишет:», «От:», «Отправлено:»,
«-------- Пересылаемое сообщение --------»), and an HTML converter (html2text) writes Markdown,
escaping the very `#` and `1.` residents type. Everything from the first line that starts a
quote or a signature on is dropped; a closing such as «С уважением» is dropped only once the
message has had words of its own, so a reading under a greeting stays.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

_SKIPPED = {"script", "style", "head", "title", "blockquote"}  # their content is not the resident's
_QUOTE_CLASSES = ("gmail_quote", "yahoo_quoted", "moz-cite-prefix", "ya-quote", "mail-quote")
_BLOCKS = {"p", "div", "br", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6", "table", "ul", "ol", "hr"}
_VOID = {"br", "hr", "img", "meta", "link", "input", "wbr", "col", "area", "base", "source"}


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skip: list[str] = []  # the open elements of a skipped subtree, innermost last

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _VOID:
            if tag in _BLOCKS and not self.skip:
                self.out.append("\n")
            return
        classes = " ".join(v or "" for k, v in attrs if k in ("class", "id")).lower()
        if self.skip or tag in _SKIPPED or any(c in classes for c in _QUOTE_CLASSES):
            self.skip.append(tag)
        elif tag in _BLOCKS:
            self.out.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if self.skip:
            if tag in self.skip:  # close up to it: a missing end tag inside must not skip the rest
                del self.skip[len(self.skip) - 1 - self.skip[::-1].index(tag) :]
            return
        if tag in _BLOCKS:
            self.out.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.out.append(data)


def html_to_text(html: str) -> str:
    """The visible text of an HTML body, one line per block, quoted parts left out."""
    parser = _Text()
    parser.feed(html)
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.out).splitlines())
    return "\n".join(line for line in lines if line)


# A line at which the resident's own words end.
_QUOTE_STARTS = re.compile(
    r"^\s*(>"  # a quoted line
    r"|--\s*$|__+\s*$"  # the signature delimiter
    r"|-{2,}\s*(original message|исходное сообщение|пересылаемое сообщение|forwarded message)"
    r"|(начало )?(пересылаемого|переадресованного) сообщения"
    r"|(sent from|get outlook|отправлено (с|из) )"  # phones' and apps' signatures
    r")",
    re.I,
)
# "чт, 3 дек. 2026 г. в 12:34, Иван <ivan@mail.ru>:", "On Mon, ... wrote:", "03.12.2026, 12:34, "Иван":"
_ATTRIBUTION = re.compile(r"(@\S*>?|wrote|пишет|писал[аи]?|написал[аи]?)\s*:\s*$", re.I)
# Outlook's block: "От: ..." followed by "Отправлено:" / "Дата:" / "Кому:" / "Тема:"
_HEADER_LINE = re.compile(
    r"^\s*\**(от|from|отправлено|sent|дата|date|кому|to|тема|subject|копия|cc)\**\s*:", re.I
)
_CLOSING = re.compile(
    r"^\s*(с уважением|с наилучшими|всего доброго|спасибо|благодарю|best regards|kind regards|regards|thanks)\b",
    re.I,
)


def without_quotes(text: str) -> str:
    """The text above the first quoted line, attribution, forwarded block or signature."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    kept: list[str] = []
    for i, line in enumerate(lines):
        if _QUOTE_STARTS.match(line) or _ATTRIBUTION.search(line):
            break
        if _HEADER_LINE.match(line) and any(_HEADER_LINE.match(nxt) for nxt in lines[i + 1 : i + 4]):
            break
        if _CLOSING.match(line) and any(k.strip() for k in kept):
            break
        kept.append(line.replace("\u00a0", " ").replace("\u200b", ""))
    return "\n".join(kept).strip()
