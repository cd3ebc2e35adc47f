"""A griffe extension: jaxrnn's docstrings (Google style with reStructuredText markup) for mkdocstrings.

The docstrings are written for the reader of the source and for doctest: Google-style
sections, with the reStructuredText that Sphinx would read. mkdocstrings renders
Markdown, so before the docstrings are parsed this extension rewrites:

- ``.. math::`` blocks to ``$$ ... $$`` (``aligned`` when they contain ``&``) and
  ``:math:`x``` to ``$x$``, for ``pymdownx.arithmatex``; ``.. code-block:: lang``
  to fenced code;
- ``:func:`name```, ``:class:``, ``:meth:``, ``:mod:``, ``:data:``, ``:attr:``,
  ``:exc:``, ``:obj:`` (a name resolved as Python would in the docstring's scope)
  to a cross-reference to the *public* path of the object the
  name means where the object is jaxrnn's public API (an unrendered target is then a
  strict-build error), and to plain code otherwise (private modules, other libraries);
- an ``Example:`` section header to ``Examples:``, which griffe parses as doctest code;
- ``a, b, c: description`` in an ``Args:`` section to one entry per name, so that
  every name is still checked against the signature;
- the docstring of a public function whose docstring is completed at import time
  (``jaxrnn.LSTM``, ``GRU``, ``RNN``) to the complete one;
- a field or constant without a docstring but with a trailing comment
  (``w_ih: Array  # [G*H, I] input-to-hidden weights``) gets the comment as its
  docstring: the house style documents NamedTuple fields that way.

"""

from __future__ import annotations

import importlib
import inspect
import io
import re
import textwrap
import tokenize
from typing import Any, Optional

import griffe

_ROLE = re.compile(r":(?:func|class|meth|mod|data|attr|exc|obj):`([~!]?)([^`<>]+)`")
_MATH_ROLE = re.compile(r":math:`([^`]+)`")
_DIRECTIVE = re.compile(r"^(?P<indent>[ \t]*)\.\. (?P<name>math|code-block|code)::[ \t]*(?P<arg>\w+)?[ \t]*$")
_EXAMPLE = re.compile(r"^(?P<indent>[ \t]*)Example:[ \t]*$")
_ARGS = re.compile(r"^(?P<indent>[ \t]*)(?:Args|Arguments|Parameters|Params):[ \t]*$")
_GROUPED = re.compile(r"^(?P<indent>[ \t]+)(?P<names>\w+(?:,[ \t]*\w+)+):(?P<rest>.*)$")
_TOOL_COMMENT = re.compile(r"(noqa|type:|pragma|pylint|fmt:|ty:)")  # comments for tools, not readers
_BRACKETS = re.compile(r"(?<!`)(\[[^\[\]`]*\])(?!`)")  # shapes such as [B, T, I], shown as code


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _directives(lines: list[str]) -> list[str]:
    """``.. math::`` to ``$$`` blocks, ``.. code-block:: lang`` to fenced code."""
    out: list[str] = []
    i = 0
    while i < len(lines):
        match = _DIRECTIVE.match(lines[i])
        if not match:
            out.append(lines[i])
            i += 1
            continue
        indent = match["indent"]
        i += 1
        body: list[str] = []
        while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > len(indent)):
            body.append(lines[i])
            i += 1
        while body and not body[-1].strip():
            body.pop()
        while body and not body[0].strip():
            body.pop(0)
        if out and out[-1].strip():
            out.append("")
        if match["name"] == "math":
            tex = [indent + b.strip() for b in body if b.strip()]
            if any("&" in b for b in tex):
                tex = [f"{indent}\\begin{{aligned}}", *tex, f"{indent}\\end{{aligned}}"]
            out.extend([f"{indent}$$", *tex, f"{indent}$$", ""])
        else:
            code = textwrap.dedent("\n".join(body)).split("\n")
            out.extend([f"{indent}```{match['arg'] or ''}", *(indent + c if c else "" for c in code), f"{indent}```", ""])
    return out


def _grouped_args(lines: list[str]) -> list[str]:
    """``a, b: description`` in an ``Args:`` section as one entry per name."""
    out: list[str] = []
    section: Optional[int] = None  # indentation of the current Args header
    i = 0
    while i < len(lines):
        line = lines[i]
        header = _ARGS.match(line)
        if header:
            section = len(header["indent"])
        elif section is not None and line.strip() and _indent(line) <= section:
            section = None
        match = _GROUPED.match(line) if section is not None else None
        if not match:
            out.append(line)
            i += 1
            continue
        more: list[str] = []
        i += 1
        while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > len(match["indent"])):
            more.append(lines[i])
            i += 1
        for name in re.split(r",[ \t]*", match["names"]):
            out.append(f"{match['indent']}{name}:{match['rest']}")
            out.extend(more)
    return out


def _trailing_comment(attr: griffe.Attribute) -> Optional[str]:
    """The comment at the end of a one-line attribute definition, or None."""
    lines = attr.lines
    if len(lines) != 1:
        return None
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(lines[0].strip() + "\n").readline))
    except (tokenize.TokenError, SyntaxError):
        return None
    comments = [t.string.lstrip("#").strip() for t in tokens if t.type == tokenize.COMMENT]
    if not comments or not comments[0] or _TOOL_COMMENT.match(comments[0]):
        return None
    return comments[0]


class RstDocstrings(griffe.Extension):
    """Rewrite the reStructuredText markup of a package's docstrings to Markdown (see the module docstring)."""

    def __init__(self, packages: tuple = ("jaxrnn",)) -> None:
        self.packages = tuple(packages)

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        if pkg.name not in self.packages:
            return
        self.collection = loader.modules_collection
        self.public: dict[str, str] = {}
        self._map_public(pkg, pkg.path, seen=set())
        self._complete_runtime_docstrings()
        self._rewrite(pkg, seen=set())

    def _map_public(self, obj: griffe.Object, public_path: str, seen: set) -> None:
        """Record ``canonical path -> public path`` for every public object under ``obj``."""
        self.public.setdefault(obj.path, public_path)
        if obj.path in seen:
            return
        seen.add(obj.path)
        for name, member in obj.members.items():
            try:
                target = member.final_target if member.is_alias else member
                public = member.is_public
            except (griffe.AliasResolutionError, griffe.CyclicAliasError):
                continue
            if not public or (member.is_module and not member.is_alias and name.startswith("_")):
                continue
            if target.is_module and member.is_alias:
                continue  # an imported module is documented where it lives
            path = f"{public_path}.{name}"
            if target.is_module or target.is_class:
                self._map_public(target, path, seen)
            else:
                self.public.setdefault(target.path, path)

    def _complete_runtime_docstrings(self) -> None:
        """Public functions whose ``__doc__`` is extended at import time get the whole docstring."""
        for canonical, public in self.public.items():
            obj = self.collection[canonical]
            if not obj.is_function or obj.docstring is None:
                continue
            module_path, _, name = public.rpartition(".")
            try:
                runtime = inspect.getdoc(getattr(importlib.import_module(module_path), name))
            except (ImportError, AttributeError):
                continue
            if runtime and runtime != obj.docstring.value and runtime.startswith(obj.docstring.value):
                obj.docstring.value = runtime

    def _rewrite(self, obj: griffe.Object, seen: set) -> None:
        if obj.path in seen:
            return
        seen.add(obj.path)
        if obj.docstring is None and obj.is_attribute and (comment := _trailing_comment(obj)):
            obj.docstring = griffe.Docstring(_BRACKETS.sub(r"`\1`", comment), lineno=obj.lineno, parent=obj)
        elif obj.docstring is not None:
            obj.docstring.value = self._markdown(obj, obj.docstring.value)
        for member in obj.members.values():
            if not member.is_alias:
                self._rewrite(member, seen)

    def _markdown(self, obj: griffe.Object, text: str) -> str:
        lines = _directives(text.split("\n"))
        lines = [_EXAMPLE.sub(r"\g<indent>Examples:", line) for line in lines]
        lines = _grouped_args(lines)
        text = "\n".join(lines)
        text = _MATH_ROLE.sub(lambda m: f"${m[1]}$", text)
        return _ROLE.sub(lambda m: self._reference(obj, m[2].strip(), m[1]), text)

    def _reference(self, obj: griffe.Object, name: str, prefix: str) -> str:
        """Sphinx's prefixes: ``~`` shows the last name only, ``!`` makes no link."""
        shown = name.rpartition(".")[2] if prefix == "~" else name
        public = None if prefix == "!" else self._public_path(obj, name)
        return f"[`{shown}`][{public}]" if public else f"`{shown}`"

    def _public_path(self, obj: griffe.Object, name: str) -> Optional[str]:
        first, _, rest = name.partition(".")
        try:
            if first in self.packages:
                target = self.collection[name]
            else:
                path = obj.resolve(first)
                target = self.collection[f"{path}.{rest}" if rest else path]
            canonical = target.final_target.path if target.is_alias else target.path
        except (KeyError, griffe.NameResolutionError, griffe.AliasResolutionError, griffe.CyclicAliasError):
            return None
        return self.public.get(canonical)
