"""The YAML files a deployment edits (taxonomy, urgency cues, expectations, alert rules), read
one way: whatever is wrong, the error names the file and the line to fix.

Each loader reads its file with ``ConfigFile.read`` (its own path, or the file shipped in its
package), validates it with ``validate`` against its pydantic model, and refuses what the
model cannot express (a pattern RE2 refuses, a blank keyword) with ``refuse``. Every problem
is one line ``<file>:<line>: <where in the document>: <what is wrong>`` under a heading that
names the file and the setting that points at it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

M = TypeVar("M", bound=BaseModel)
Loc = Sequence[str | int]


class ConfigError(ValueError):
    """A configuration file that does not load; the message names the file and line of each
    problem."""


@dataclass(frozen=True)
class ConfigFile:
    """One YAML configuration file as read: where it came from, its node tree (which knows
    the line of every value) and its data."""

    source: str
    heading: str
    tree: yaml.Node | None
    data: Any

    @classmethod
    def read(cls, path: Path | None, package: str, name: str, what: str,
             setting: str) -> ConfigFile:
        """``path``, or the file ``name`` shipped in ``package`` when it is None. ``what`` and
        ``setting`` name the file's role in errors ("urgency cues", "VOC_URGENCY_PATH")."""
        source = str(path) if path else f"the built-in {name}"
        heading = f"cannot load {what} from {source} ({setting})"
        try:
            raw = (path.read_text(encoding="utf-8") if path
                   else resources.files(package).joinpath(name).read_text("utf-8"))
            return cls(source, heading, yaml.compose(raw, Loader=yaml.SafeLoader),
                       yaml.safe_load(raw))
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{heading}: {exc}") from exc
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
            raise ConfigError(f"{heading}: {where}: not valid YAML: {exc.problem or exc}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"{heading}: not valid YAML: {exc}") from exc

    def node(self, loc: Loc) -> yaml.Node | None:
        """The node at ``loc`` (mapping keys and list indexes), or the deepest one on the way
        that the file has; None for an empty file."""
        node = self.tree
        for part in loc:
            child = child_node(node, part)
            if child is None:
                break
            node = child
        return node

    def where(self, loc: Loc) -> str:
        """``<file>:<line>`` of the value at ``loc`` (or of the nearest enclosing one)."""
        node = self.node(loc)
        return f"{self.source}:{node.start_mark.line + 1}" if node is not None else self.source

    def refuse(self, loc: Loc, message: str) -> ConfigError:
        """The error for one problem at ``loc``, for the loader to raise."""
        return self.problems([f"{self.where(loc)}: {message}"])

    def problems(self, lines: Sequence[str]) -> ConfigError:
        return ConfigError(f"{self.heading}:\n" + "\n".join(f"  {line}" for line in lines))

    def validate(self, model: type[M], document: Any = None,
                 describe: Callable[[ErrorDetails, ConfigFile], str] | None = None) -> M:
        """The file's data (or ``document`` made of it) as ``model``; each validation error
        becomes one line, by default ``<file>:<line>: field <path>: <message>``."""
        try:
            return model.model_validate(self.data if document is None else document)
        except ValidationError as exc:
            explain = describe or describe_error
            raise self.problems([explain(error, self) for error in exc.errors()]) from exc


def child_node(node: yaml.Node | None, part: str | int) -> yaml.Node | None:
    """The value node under a mapping key or at a sequence index, if the file has it."""
    if isinstance(node, yaml.MappingNode):
        return next((v for k, v in node.value if k.value == str(part)), None)
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
        return node.value[part]
    return None


def error_message(error: ErrorDetails) -> str:
    """What is wrong, in the words of the validator that refused it, with the value refused."""
    cause = (error.get("ctx") or {}).get("error")
    if cause is not None:
        return str(cause)
    value = error.get("input")
    if error["type"] != "missing" and not isinstance(value, (dict, list)):
        return f"{error['msg']} (got {value!r})"
    return error["msg"]


def describe_error(error: ErrorDetails, file: ConfigFile) -> str:
    """One validation error as ``<file>:<line>: field <path>: <message>``."""
    loc = list(error["loc"])
    subject = "field " + ".".join(str(part) for part in loc) if loc else "file"
    return f"{file.where(loc)}: {subject}: {error_message(error)}"


class Watched:
    """A configuration file a running stage re-reads when it is edited (alert rules, the
    taxonomy): the stage asks :meth:`changed` before each batch. No path (the shipped default)
    and an unreadable file never count as a change, so the stage keeps what it has."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._mtime = self._stat()

    def _stat(self) -> float | None:
        try:
            return self.path.stat().st_mtime if self.path else None
        except OSError:
            return None

    def changed(self) -> bool:
        """True once per change of the file's modification time since the last call."""
        mtime = self._stat()
        if mtime is None or mtime == self._mtime:
            return False
        self._mtime = mtime
        return True
