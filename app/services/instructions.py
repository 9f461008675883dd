"""Labeling instructions: Markdown written by researchers, rendered to sanitised HTML."""

from __future__ import annotations

from urllib.parse import urlsplit

import nh3
from markdown_it import MarkdownIt
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Instructions, User
from app.services import Invalid

MAX_CHARS = 100_000

DEFAULT_INSTRUCTIONS = """\
# Labeling instructions

Your work teaches a language model to follow instructions. Judge every output as the person
who wrote the prompt would: what did they actually want?

## What a good output is

- **Helpful**: it does what the user asked, in the form they asked for (length, language,
  format), and infers the intent behind the request. If the request is ambiguous, a good
  output asks for clarification rather than guessing wildly.
- **Truthful**: it does not make up facts. For tasks about a given text (summarise, extract,
  answer from the passage) it uses only information in that text.
- **Harmless**: it does not insult or demean people, is not sexual or violent without reason,
  and does not help anyone cause real-world harm.

**During training data collection, put helpfulness to the user first.** (In final evaluations
truthfulness and harmlessness come first.) A refusal to do a harmless task is not helpful.

## Demonstrations

Write the response you would want an excellent assistant to give. Follow the prompt's format;
for few-shot prompts, answer the last query in the style of the examples.

## Rankings

Order the outputs from best to worst. Put outputs in the same place (a tie) only when you
truly cannot prefer one. Give each output an overall quality score from 1 (terrible) to 7
(excellent) and tick every statement that applies to it.

## Skipping

Skip a task only when the prompt is so unclear that you cannot tell what the user wants, or
when you cannot judge it (for example a language you do not read). Say why in a few words.
"""

_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")


def _same_origin_images(element: str, attribute: str, value: str) -> str | None:
    """nh3 attribute filter: an image may come only from this site (a path, no scheme or host).

    An image from another origin is a tracking pixel: it tells that server every time a
    labeler opens the instructions (and from where). The Content-Security-Policy blocks it
    too; this keeps it out of the page in the first place.
    """
    if element == "img" and attribute in {"src", "srcset"}:
        url = value.strip()
        parsed = urlsplit(url)
        # browsers read a backslash as "/": "/\\evil.example" would be another origin
        same_site = not parsed.scheme and not parsed.netloc and "\\" not in url
        if attribute == "srcset" or not same_site or url.startswith("//"):
            return None
    return value


def render_markdown(markdown: str) -> str:
    """Markdown to HTML that is safe to insert: raw HTML is not passed through by the parser,
    and nh3 removes anything dangerous that remains (javascript: links, event handlers,
    images from other origins)."""
    html = _markdown.render(markdown)
    return nh3.clean(
        html, link_rel="noopener noreferrer nofollow", attribute_filter=_same_origin_images
    )


def current_instructions(session: Session) -> Instructions | None:
    return session.scalar(
        select(Instructions).order_by(Instructions.created_at.desc(), Instructions.id.desc())
    )


def current_markdown(session: Session) -> str:
    current = current_instructions(session)
    return current.markdown if current is not None else DEFAULT_INSTRUCTIONS


def save_instructions(session: Session, markdown: str, author: User | None) -> Instructions:
    """Store a new version (the newest is current; older ones are kept as history)."""
    markdown = markdown.replace("\r\n", "\n")
    if not markdown.strip():
        raise Invalid("the instructions must not be empty", field="markdown")
    if len(markdown) > MAX_CHARS:
        raise Invalid(f"the instructions are longer than {MAX_CHARS} characters", field="markdown")
    row = Instructions(markdown=markdown, updated_by_id=author.id if author else None)
    session.add(row)
    session.flush()
    return row
