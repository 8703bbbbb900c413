"""Card text (markdown, from cards/ and from the chart data filled into it) -> HTML safe to put in a page: raw HTML
in the text is shown as text, and a link or image keeps its address only when it is http(s) or on this site."""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import markdown
from markdown.extensions import Extension
from markdown.treeprocessors import Treeprocessor

_SAFE_URL = re.compile(r"^(https?://|/(?![/\\]))", re.IGNORECASE)


def safe_url(url: object) -> str | None:
    """The URL if a page may link to it (http, https or a path on this site), else None."""
    return url.strip() if isinstance(url, str) and _SAFE_URL.match(url.strip()) else None


def safe_html(text: str) -> str:
    """The markdown rendered to HTML with no raw HTML and no unsafe link addresses."""
    return markdown.markdown(text, extensions=[_Safe()])


class _DropUnsafeAddresses(Treeprocessor):
    def run(self, root: ET.Element) -> None:
        for element in root.iter():
            for attribute in ("href", "src"):
                if attribute in element.attrib and safe_url(element.attrib[attribute]) is None:
                    del element.attrib[attribute]


class _Safe(Extension):
    def extendMarkdown(self, md: markdown.Markdown) -> None:  # noqa: N802 - the markdown package's naming
        # without these two, markdown passes HTML in the text through as it is
        md.preprocessors.deregister("html_block")
        md.inlinePatterns.deregister("html")
        md.treeprocessors.register(_DropUnsafeAddresses(md), "spasm_cds_safe_addresses", 0)
