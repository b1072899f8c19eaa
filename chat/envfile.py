"""The `.env` file of `chat-api`: `./.env` in the working directory, or the one `--env-file PATH`
names; a variable already in the environment wins over the file's (PROTOCOL section 7).

The file is read literally (no `${VAR}` expansion), with the reader of the cut-over programs
(chat/cutover/envfile.py), so the `.env` that `migrate-config` writes reads back unchanged."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from chat.cutover.envfile import read_env

DEFAULT_NAME = ".env"


class EnvFileError(Exception):
    """The `.env` file named cannot be read (one line for the operator)."""


@dataclass(frozen=True)
class EnvFile:
    """What was read: the file (None: none) and its variables (values never shown)."""

    path: Path | None = None
    values: dict[str, str] = field(default_factory=dict, repr=False)
    overridden: frozenset[str] = frozenset()  # names the environment also sets (the environment won)

    def describe(self) -> str:
        """The start line's text: which file, how many variables; never a value."""
        if self.path is None:
            return "no .env file read"
        used = len(self.values) - len(self.overridden)
        text = f"read {self.path} ({used} variable(s) used"
        if self.overridden:
            text += f"; {len(self.overridden)} already set in the environment: {', '.join(sorted(self.overridden))}"
        return text + ")"


def load_env_file(explicit: Path | None, environ: Mapping[str, str], cwd: Path | None = None) -> EnvFile:
    """Read `explicit` (EnvFileError when it cannot be read), else `.env` in `cwd` when it exists."""
    if explicit is not None:
        path = explicit
    else:
        path = (cwd or Path.cwd()) / DEFAULT_NAME
        if not path.is_file():
            return EnvFile()
    try:
        raw, _warnings = read_env(path)
    except OSError as exc:
        raise EnvFileError(f"cannot read the env file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise EnvFileError(f"cannot read the env file {path}: not UTF-8 text") from None
    values = {name: value for name, value in raw.items() if value is not None}  # `NAME` alone sets nothing
    return EnvFile(path.resolve(), values, frozenset(values.keys() & environ.keys()))


def merged(env_file: EnvFile, environ: Mapping[str, str]) -> dict[str, str]:
    """The variables the settings are read from: the file's, then the environment's over them."""
    return {**env_file.values, **environ}
