"""A `Source`: the files of the --src paths, found in archives, folders and archives inside either."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from rich.progress import track

from seg.errors import DataError, UserError
from seg.prepare.archives import Container, inner_archive, open_path
from seg.prepare.console import console

JUNK = re.compile(r"(^|/)(__MACOSX/|\._|\.DS_Store$|Thumbs\.db$)")  # macOS resource forks and the like


@dataclass(frozen=True)
class Member:
    """A file of the source: `path` as a posix path, `order` its position for sequential reading."""

    path: str
    container: Container = field(compare=False, repr=False)
    order: tuple[int, int] = field(compare=False, repr=False)

    @property
    def name(self) -> str:
        return PurePosixPath(self.path).name

    @property
    def stem(self) -> str:
        return PurePosixPath(self.path).stem

    def read(self) -> bytes:
        return self.container.read(self.path)


class Source:
    """The files of one or more --src paths: archives, extracted folders, or folders holding either.

    Archives whose name matches `archives` (the dataset's distributed archive names) are opened wherever they
    lie: in a --src folder (so `--src ~/Downloads` finds `kvasir-seg.zip` there) and inside another archive
    (a "download all" bundle such as Kaggle's zip of zips, or a tar holding zips), read from within it.
    A zip or plain tar in a --src folder that holds such archives is opened as a bundle too. Other
    archives are not read.
    """

    def __init__(self, paths: Iterable[Path], *, archives: str, progress: bool = True) -> None:
        self.paths = [Path(p).expanduser() for p in paths]
        self.progress = progress
        wanted = re.compile(archives)
        containers: list[Container] = []
        for path in self.paths:
            if not path.exists():
                raise UserError(
                    f"--src {path}: no such file or folder; pass the downloaded archive or its extracted folder"
                )
            containers.append(open_path(path))
        self.members: list[Member] = []
        index = 0
        while index < len(containers):  # grows while archives inside archives are found
            container = containers[index]
            for position, name in enumerate(container.names()):
                if JUNK.search(name):
                    continue
                self.members.append(Member(name, container, (index, position)))
                if (inner := inner_archive(container, name, wanted)) is not None:
                    containers.append(inner)
            index += 1

    def __str__(self) -> str:
        return ", ".join(str(p) for p in self.paths)

    def track(self, items: Iterable, description: str) -> Iterable:
        """`items`, with a progress bar on stderr (long reads and copies)."""
        return track(items, description=description, console=console, disable=not self.progress)

    def matching(self, pattern: str) -> list[tuple[re.Match[str], Member]]:
        """Members whose path ends with `pattern` (a regex matched after `^` or a `/`), in archive order."""
        regex = re.compile(rf"(?:^|/)(?:{pattern})$", re.IGNORECASE)
        return [(match, m) for m in self.members if (match := regex.search(m.path))]

    def layout_error(self, dataset: str, expected: str) -> DataError:
        """The source does not hold the dataset: say what was expected and what was found instead."""
        tops = Counter(m.path.split("/")[0] + ("/" if "/" in m.path else "") for m in self.members)
        found = ", ".join(f"{top} ({n} files)" if top.endswith("/") else top for top, n in tops.most_common(5))
        found = found or "no files"
        more = f" and {len(tops) - 5} more" if len(tops) > 5 else ""
        return DataError(
            f"{self}: not the {dataset} layout: expected {expected}; found {found}{more}; pass the archive(s) as downloaded, or their extracted folders"
        )
