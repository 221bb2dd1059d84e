"""Zips, tars and folders read alike, archives inside archives read where they lie: nothing is extracted to disk."""

from __future__ import annotations

import re
import tarfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from seg.errors import DataError, UserError

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
BUNDLE_SUFFIXES = (".zip", ".tar")  # archives in a --src folder looked into for the dataset's archives


class Container:
    """One archive or folder given as (or found in) --src; `label` names it in messages."""

    def __init__(self, label: str) -> None:
        self.label = label

    def names(self) -> list[str]:
        raise NotImplementedError

    def read(self, name: str) -> bytes:
        raise NotImplementedError

    def nested(self, name: str) -> Container:
        """The archive stored as member `name`, read where it lies: nothing is extracted to disk."""
        raise NotImplementedError

    def close(self) -> None:
        pass

    def _unreadable(self, error: Exception, name: str | None = None) -> DataError:
        what = self.label + (f" ({name})" if name else "")
        return DataError(
            f"{what}: cannot read this archive ({type(error).__name__}: {error}); it may be incomplete or damaged, download it again"
        )


class Folder(Container):
    def __init__(self, path: Path) -> None:
        super().__init__(str(path))
        self.path = path

    def names(self) -> list[str]:
        base = self.path.parent
        return [p.relative_to(base).as_posix() for p in sorted(self.path.rglob("*")) if p.is_file()]

    def read(self, name: str) -> bytes:
        return (self.path.parent / name).read_bytes()

    def nested(self, name: str) -> Container:
        return open_path(self.path.parent / name)


class Zip(Container):
    """A zip file, or a zip stored in another archive (a seekable file object from it)."""

    def __init__(self, label: str, file: Path | BinaryIO) -> None:
        super().__init__(label)
        try:
            self._zip = zipfile.ZipFile(file)  # kept open while the plan is written
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as error:
            raise self._unreadable(error) from None

    def names(self) -> list[str]:
        return [info.filename for info in self._zip.infolist() if not info.is_dir()]

    def read(self, name: str) -> bytes:
        try:
            return self._zip.read(name)
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as error:
            raise self._unreadable(error, name) from None

    def nested(self, name: str) -> Container:
        try:
            # A seekable stream over the member: reading the inner archive's members in order decompresses
            # the outer member about twice (its directory is at the end), and never writes it anywhere.
            return open_archive(f"{self.label}/{name}", name, self._zip.open(name))
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as error:
            raise self._unreadable(error, name) from None

    def close(self) -> None:
        self._zip.close()


class Tar(Container):
    """Members are read in archive order (see `write_plan`), so a .tar.gz is decompressed about once."""

    def __init__(self, label: str, file: Path | BinaryIO) -> None:
        super().__init__(label)
        try:
            if isinstance(file, Path):
                self._tar = tarfile.open(file, "r:*")  # noqa: SIM115 (kept open while the plan is written)
            else:
                self._tar = tarfile.open(fileobj=file, mode="r:*")  # noqa: SIM115
            self._members = {m.name.removeprefix("./"): m for m in self._tar.getmembers() if m.isfile()}
        except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
            raise self._unreadable(error) from None

    def names(self) -> list[str]:
        return list(self._members)

    def read(self, name: str) -> bytes:
        try:
            return self._tar.extractfile(self._members[name]).read()
        except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
            raise self._unreadable(error, name) from None

    def nested(self, name: str) -> Container:
        try:
            return open_archive(f"{self.label}/{name}", name, self._tar.extractfile(self._members[name]))
        except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
            raise self._unreadable(error, name) from None

    def close(self) -> None:
        self._tar.close()


def open_archive(label: str, name: str, file: Path | BinaryIO) -> Container:
    return Zip(label, file) if name.lower().endswith(".zip") else Tar(label, file)


def open_path(path: Path) -> Container:
    if path.is_dir():
        return Folder(path)
    if path.name.lower().endswith(ARCHIVE_SUFFIXES):
        return open_archive(str(path), path.name, path)
    raise UserError(
        f"{path}: not a folder or an archive ({', '.join(ARCHIVE_SUFFIXES)}); pass the downloaded archive or its extracted folder"
    )


def inner_archive(container: Container, name: str, wanted: re.Pattern[str]) -> Container | None:
    """Member `name` opened as an archive if it is one of the dataset's archives, or a bundle of them in a folder."""
    base = PurePosixPath(name).name.lower()
    if wanted.fullmatch(base):
        return container.nested(name)
    if isinstance(container, Folder) and base.endswith(BUNDLE_SUFFIXES):
        return _bundle(container, name, wanted)
    return None


def _bundle(folder: Folder, name: str, wanted: re.Pattern[str]) -> Container | None:
    """The archive `name` of a folder if it holds one of the dataset's archives (a "download all" bundle), else None.

    Only .zip and plain .tar are looked into: listing them reads their directory or headers, not their data
    (a .tar.gz would be decompressed whole). An unreadable archive is someone else's file: passed over.
    """
    try:
        archive = folder.nested(name)
    except UserError:
        return None
    if any(wanted.fullmatch(PurePosixPath(inner).name.lower()) for inner in archive.names()):
        return archive
    archive.close()
    return None
