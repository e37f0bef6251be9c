"""A griffe extension (mkdocs.yml: mkdocstrings' ``extensions``) that shows docstring examples as code.

The docstrings carry doctest examples (``>>> ...`` and their output, run by tests/repository/test_docs.py) in the
middle of their prose, without a reST or Markdown code fence. Rendered as Markdown they would be a
paragraph, and output such as ``[128, 256]`` would read as a link. This wraps each run of doctest
lines (a ``>>>`` line up to the next blank line) in a ```` ```pycon ```` fence, so the API reference
shows them as highlighted sessions; the source stays plain doctest.
"""
from __future__ import annotations

from typing import Any

from griffe import Extension, Object


def fence_doctests(text: str) -> str:
    out: list[str] = []
    in_fence = in_doctest = False
    indent = ""
    for line in text.splitlines():
        stripped = line.lstrip()
        if in_doctest and not stripped:
            out += [indent + "```", ""]
            in_doctest = False
            continue
        if not in_doctest and stripped.startswith("```"):
            in_fence = not in_fence
        elif not in_doctest and not in_fence and (stripped.startswith(">>> ") or stripped == ">>>"):
            indent = line[: len(line) - len(stripped)]
            if out and out[-1].strip():
                out.append("")
            out.append(indent + "```pycon")
            in_doctest = True
        out.append(line)
    if in_doctest:
        out.append(indent + "```")
    return "\n".join(out)


class DoctestFences(Extension):
    def on_object(self, *, obj: Object, **kwargs: Any) -> None:
        if obj.docstring is not None and ">>>" in obj.docstring.value:
            obj.docstring.value = fence_doctests(obj.docstring.value)
