"""What every preparer shares: reading a source (zip, tar, folder) uniformly, and writing our layout safely.

A preparer looks at the files of its `Source` (posix paths as stored in the archives, or relative to a
`--src` folder's parent, so `kvasir-seg.zip` and its extracted `Kvasir-SEG/` list the same paths) and
returns a `Plan`: which file goes where, and how a file our loader cannot read is converted. `write_plan`
then writes it into a temporary folder next to `out`, adds `prepared.json`, and renames the folder into
place: an interrupted prepare leaves no half dataset. Sources are only ever opened for reading.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import tarfile
import tempfile
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import cv2
import numpy as np
from PIL import Image
from rich.console import Console
from rich.progress import track

from seg.errors import DataError, UserError

PREPARE_VERSION = 1  # bump when a preparer writes different files for the same source
SPLITS = ("train", "val", "test")
JUNK = re.compile(r"(^|/)(__MACOSX/|\._|\.DS_Store$|Thumbs\.db$)")  # macOS resource forks and the like
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")

console = Console(stderr=True)


# ---- reading ---------------------------------------------------------------------------------------------


class _Container:
    """One archive or folder given as (or found in) --src."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def names(self) -> list[str]:
        raise NotImplementedError

    def read(self, name: str) -> bytes:
        raise NotImplementedError

    def _unreadable(self, error: Exception, name: str | None = None) -> DataError:
        what = f"{self.path}" + (f" ({name})" if name else "")
        return DataError(
            f"{what}: cannot read this archive ({type(error).__name__}: {error}); it may be incomplete or damaged, download it again"
        )


class _Folder(_Container):
    def names(self) -> list[str]:
        base = self.path.parent
        return [p.relative_to(base).as_posix() for p in sorted(self.path.rglob("*")) if p.is_file()]

    def read(self, name: str) -> bytes:
        return (self.path.parent / name).read_bytes()


class _Zip(_Container):
    def __init__(self, path: Path) -> None:
        super().__init__(path)
        try:
            self._zip = zipfile.ZipFile(path)  # kept open while the plan is written
        except (zipfile.BadZipFile, OSError, EOFError) as error:
            raise self._unreadable(error) from None

    def names(self) -> list[str]:
        return [info.filename for info in self._zip.infolist() if not info.is_dir()]

    def read(self, name: str) -> bytes:
        try:
            return self._zip.read(name)
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as error:
            raise self._unreadable(error, name) from None


class _Tar(_Container):
    """Members are read in archive order (see `write_plan`), so a .tar.gz is decompressed about once."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        try:
            self._tar = tarfile.open(path, "r:*")  # noqa: SIM115 (kept open while the plan is written)
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


def _open(path: Path) -> _Container:
    if path.is_dir():
        return _Folder(path)
    if path.name.lower().endswith(".zip"):
        return _Zip(path)
    if path.name.lower().endswith(ARCHIVE_SUFFIXES):
        return _Tar(path)
    raise UserError(
        f"{path}: not a folder or an archive ({', '.join(ARCHIVE_SUFFIXES)}); pass the downloaded archive or its extracted folder"
    )


@dataclass(frozen=True)
class Member:
    """A file of the source: `path` as a posix path, `order` its position for sequential reading."""

    path: str
    container: _Container = field(compare=False, repr=False)
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

    Inside a --src folder, archives whose name matches `archives` (the dataset's distributed archive names)
    are opened too, so `--src ~/Downloads` finds `kvasir-seg.zip` there; other archives are not read.
    """

    def __init__(self, paths: Iterable[Path], *, archives: str, progress: bool = True) -> None:
        self.paths = [Path(p).expanduser() for p in paths]
        self.progress = progress
        archive_names = re.compile(archives)
        self.members: list[Member] = []
        containers: list[_Container] = []
        for path in self.paths:
            if not path.exists():
                raise UserError(
                    f"--src {path}: no such file or folder; pass the downloaded archive or its extracted folder"
                )
            containers.append(_open(path))
            if path.is_dir():
                nested = sorted(p for p in path.rglob("*") if p.is_file() and archive_names.fullmatch(p.name.lower()))
                containers.extend(_open(p) for p in nested)
        for index, container in enumerate(containers):
            for position, name in enumerate(container.names()):
                if not JUNK.search(name):
                    self.members.append(Member(name, container, (index, position)))

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


# ---- writing ---------------------------------------------------------------------------------------------

Convert = Callable[[list[bytes]], bytes]  # the bytes of the source members -> the bytes of the file to write


@dataclass
class Job:
    """One file to write at `dest` (posix, relative to out): a copy of `sources[0]`, or `convert(...)` of all."""

    dest: str
    sources: list[Member]
    convert: Convert | None = None


@dataclass
class Plan:
    jobs: list[Job]
    counts: dict[str, int]  # images per split ("all" for the images/ + masks/ layout)
    notes: dict[str, object] = field(default_factory=dict)  # recorded in prepared.json, e.g. what was converted
    warnings: list[str] = field(default_factory=list)  # printed to the user and recorded


@dataclass(frozen=True)
class Dataset:
    """A public dataset: where to download it, and how its distributed layout becomes ours."""

    name: str  # the CLI name and the preset conf/data/<name>.yaml
    title: str
    download: str  # the official page
    archives: str  # regex (lower case) of its archive names, looked for inside a --src folder
    plan: Callable[[Source], Plan]
    max_side: int | None = None  # default of --max-side


def paired_stems(source: Source, images: dict, masks: dict, title: str, expected: str) -> tuple[list[str], list[str]]:
    """(stems with both an image and a mask, one warning per file without its partner); none paired is a layout error."""
    stems = sorted(images.keys() & masks.keys())
    if not stems:
        raise source.layout_error(title, expected)
    warnings = [f"{images[s].path}: no mask, skipped" for s in sorted(images.keys() - masks.keys())]
    warnings += [f"{masks[s].path}: no image, skipped" for s in sorted(masks.keys() - images.keys())]
    return stems, warnings


def pair_jobs(split: str | None, image: Job, mask: Job) -> list[Job]:
    """The two jobs of an image/mask pair, placed in `split/` (None: the images/ + masks/ layout)."""
    prefix = f"{split}/" if split else ""
    image.dest = f"{prefix}images/{image.dest}"
    mask.dest = f"{prefix}masks/{mask.dest}"
    return [image, mask]


def check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"--out {out}: already exists and is not empty; choose another --out or remove it first")


def write_plan(plan: Plan, out: Path, *, dataset: str, source: Source, max_side: int | None = None) -> dict:
    """Write the plan into a temporary folder next to `out`, then rename it to `out`; returns the manifest.

    max_side: images (and their masks) whose longest side is larger are shrunk to it; None keeps every size.
    """
    check_out(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.prepare-", dir=out.parent))
    try:
        jobs = sorted(plan.jobs, key=lambda job: job.sources[0].order)  # archive order: one pass over a .tar.gz
        for job in source.track(jobs, f"{dataset}: writing {out}"):
            data = [member.read() for member in job.sources]
            target = tmp / job.dest
            target.parent.mkdir(parents=True, exist_ok=True)
            encoded = job.convert(data) if job.convert else data[0]
            if max_side:
                encoded = shrink(encoded, max_side=max_side, dest=job.dest)
            target.write_bytes(encoded)
        manifest = {
            "dataset": dataset,
            "prepare_version": PREPARE_VERSION,
            "source": [str(p.resolve()) for p in source.paths],
            "layout": "flat" if set(plan.counts) == {"all"} else "splits",
            "counts": plan.counts,
            "max_side": max_side,
            **plan.notes,
            "warnings": plan.warnings,
        }
        (tmp / "prepared.json").write_text(json.dumps(manifest, indent=2) + "\n")
        check_out(out)  # another process may have written it meanwhile
        if out.exists():
            out.rmdir()  # empty: replaced by the finished folder
        os.rename(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return manifest


# ---- conversions -----------------------------------------------------------------------------------------


def open_image(data: bytes, name: str) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except Exception as error:  # Pillow raises many types for a bad file
        raise DataError(
            f"{name}: cannot decode this image ({error}); the download may be damaged, fetch it again"
        ) from None
    return image


def png_bytes(array: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".png", array)
    assert ok
    return encoded.tobytes()


def binary_mask(data: bytes, name: str) -> np.ndarray:
    """(H, W) bool: True where a lossless two-level mask (GIF, PNG, TIFF) is not black.

    Through the palette: a GIF stores indices (Carvana's 0/1) whose colours are black and white.
    """
    return np.asarray(open_image(data, name).convert("L")) > 0


def gif_to_png(name: str) -> Convert:
    """A two-level mask (e.g. Carvana's GIF) as a 0/255 PNG our loader can read."""
    return lambda data: png_bytes(binary_mask(data[0], name).astype(np.uint8) * 255)


def shrink(encoded: bytes, *, max_side: int, dest: str) -> bytes:
    """The file shrunk so its longest side is max_side (images: area; masks: nearest, keeping their values).

    An image and its mask have the same size, so both get the same new size without knowing each other.
    """
    array = cv2.imdecode(np.frombuffer(encoded, np.uint8), cv2.IMREAD_UNCHANGED)
    if array is None:
        raise DataError(f"{dest}: cannot decode this file to shrink it; prepare again without --max-side")
    height, width = array.shape[:2]
    if max(height, width) <= max_side:
        return encoded
    scale = max_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    is_mask = "masks/" in dest
    small = cv2.resize(array, size, interpolation=cv2.INTER_NEAREST if is_mask else cv2.INTER_AREA)
    suffix = PurePosixPath(dest).suffix.lower()
    ok, out = cv2.imencode(suffix, small, [cv2.IMWRITE_JPEG_QUALITY, 95] if suffix in (".jpg", ".jpeg") else [])
    assert ok
    return out.tobytes()
