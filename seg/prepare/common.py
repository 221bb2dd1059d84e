"""What every preparer shares: reading a source (zip, tar, folder, archives inside archives) uniformly, and
writing our layout safely.

A preparer looks at the files of its `Source` (posix paths as stored in the archives, or relative to a
`--src` folder's parent, so `kvasir-seg.zip` and its extracted `Kvasir-SEG/` list the same paths) and
returns a `Plan`: which file goes where, and how a file our loader cannot read is converted. `write_plan`
then writes it into a temporary folder next to `out`, checking every file on the way (damaged JPEGs,
masks without foreground: `Checks`), adds `prepared.json`, and renames the folder into place: an
interrupted prepare leaves no half dataset. Sources are only ever opened for reading.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import sys
import tarfile
import tempfile
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import cv2
import numpy as np
from PIL import Image
from rich.console import Console
from rich.progress import track

from seg.errors import DataError, UserError

PREPARE_VERSION = 2  # bump when a preparer writes different files for the same source
SPLITS = ("train", "val", "test")
JUNK = re.compile(r"(^|/)(__MACOSX/|\._|\.DS_Store$|Thumbs\.db$)")  # macOS resource forks and the like
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
BUNDLE_SUFFIXES = (".zip", ".tar")  # archives in a --src folder looked into for the dataset's archives

console = Console(stderr=True)


# ---- reading ---------------------------------------------------------------------------------------------


class _Container:
    """One archive or folder given as (or found in) --src; `label` names it in messages."""

    def __init__(self, label: str) -> None:
        self.label = label

    def names(self) -> list[str]:
        raise NotImplementedError

    def read(self, name: str) -> bytes:
        raise NotImplementedError

    def nested(self, name: str) -> _Container:
        """The archive stored as member `name`, read where it lies: nothing is extracted to disk."""
        raise NotImplementedError

    def close(self) -> None:
        pass

    def _unreadable(self, error: Exception, name: str | None = None) -> DataError:
        what = self.label + (f" ({name})" if name else "")
        return DataError(
            f"{what}: cannot read this archive ({type(error).__name__}: {error}); it may be incomplete or damaged, download it again"
        )


class _Folder(_Container):
    def __init__(self, path: Path) -> None:
        super().__init__(str(path))
        self.path = path

    def names(self) -> list[str]:
        base = self.path.parent
        return [p.relative_to(base).as_posix() for p in sorted(self.path.rglob("*")) if p.is_file()]

    def read(self, name: str) -> bytes:
        return (self.path.parent / name).read_bytes()

    def nested(self, name: str) -> _Container:
        return _open(self.path.parent / name)


class _Zip(_Container):
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

    def nested(self, name: str) -> _Container:
        try:
            # A seekable stream over the member: reading the inner archive's members in order decompresses
            # the outer member about twice (its directory is at the end), and never writes it anywhere.
            return _archive(f"{self.label}/{name}", name, self._zip.open(name))
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as error:
            raise self._unreadable(error, name) from None

    def close(self) -> None:
        self._zip.close()


class _Tar(_Container):
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

    def nested(self, name: str) -> _Container:
        try:
            return _archive(f"{self.label}/{name}", name, self._tar.extractfile(self._members[name]))
        except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
            raise self._unreadable(error, name) from None

    def close(self) -> None:
        self._tar.close()


def _archive(label: str, name: str, file: Path | BinaryIO) -> _Container:
    return _Zip(label, file) if name.lower().endswith(".zip") else _Tar(label, file)


def _open(path: Path) -> _Container:
    if path.is_dir():
        return _Folder(path)
    if path.name.lower().endswith(ARCHIVE_SUFFIXES):
        return _archive(str(path), path.name, path)
    raise UserError(
        f"{path}: not a folder or an archive ({', '.join(ARCHIVE_SUFFIXES)}); pass the downloaded archive or its extracted folder"
    )


def _inner_archive(container: _Container, name: str, wanted: re.Pattern[str]) -> _Container | None:
    """Member `name` opened as an archive if it is one of the dataset's archives, or a bundle of them in a folder."""
    base = PurePosixPath(name).name.lower()
    if wanted.fullmatch(base):
        return container.nested(name)
    if isinstance(container, _Folder) and base.endswith(BUNDLE_SUFFIXES):
        return _bundle(container, name, wanted)
    return None


def _bundle(folder: _Folder, name: str, wanted: re.Pattern[str]) -> _Container | None:
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
        containers: list[_Container] = []
        for path in self.paths:
            if not path.exists():
                raise UserError(
                    f"--src {path}: no such file or folder; pass the downloaded archive or its extracted folder"
                )
            containers.append(_open(path))
        self.members: list[Member] = []
        index = 0
        while index < len(containers):  # grows while archives inside archives are found
            container = containers[index]
            for position, name in enumerate(container.names()):
                if JUNK.search(name):
                    continue
                self.members.append(Member(name, container, (index, position)))
                if (inner := _inner_archive(container, name, wanted)) is not None:
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
    info: list[str] = field(default_factory=list)  # printed to the user: choices made, e.g. which archive was used


@dataclass(frozen=True)
class Dataset:
    """A public dataset: where to download it, and how its distributed layout becomes ours."""

    name: str  # the CLI name and the preset conf/data/<name>.yaml
    title: str
    download: str  # the official page
    archives: str  # regex (lower case) of its archive names, looked for inside a --src folder
    plan: Callable[[Source], Plan]
    foreground: tuple[int, ...]  # the mask values written that mean foreground: the preset's data.mask.foreground
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


def say(line: str) -> None:
    """One line on stderr, not wrapped at the terminal's width (so it can be searched for as a whole)."""
    console.print(line, markup=False, highlight=False, soft_wrap=True)


def warn(text: str) -> None:
    say(f"warning: {text}")


def write_plan(
    plan: Plan, out: Path, *, dataset: str, source: Source, foreground: tuple[int, ...], max_side: int | None = None
) -> dict:
    """Write the plan into a temporary folder next to `out`, then rename it to `out`; returns the manifest.

    Every file is checked as it is written (see `Checks`): damaged JPEGs are re-encoded, masks without a
    `foreground` value are named. max_side: images (and their masks) whose longest side is larger are
    shrunk to it; None keeps every size.
    """
    check_out(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.prepare-", dir=out.parent))
    checks = Checks(foreground)
    try:
        jobs = sorted(plan.jobs, key=lambda job: job.sources[0].order)  # archive order: one pass over a .tar.gz
        for job in source.track(jobs, f"{dataset}: writing {out}"):
            data = [member.read() for member in job.sources]
            encoded = job.convert(data) if job.convert else data[0]
            encoded, dest = checks.jpeg(encoded, job.dest, source=job.sources[0].path)
            if max_side:
                encoded = shrink(encoded, max_side=max_side, dest=dest)
            checks.mask(encoded, dest)
            target = tmp / dest
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(encoded)
        for warning in checks.warnings():
            warn(warning)
        manifest = {
            "dataset": dataset,
            "prepare_version": PREPARE_VERSION,
            "source": [str(p.resolve()) for p in source.paths],
            "layout": "flat" if set(plan.counts) == {"all"} else "splits",
            "counts": plan.counts,
            "max_side": max_side,
            **plan.notes,
            "reencoded_damaged_jpegs": checks.reencoded,
            "masks_without_foreground": checks.empty_masks,
            "warnings": plan.warnings + checks.warnings(),
        }
        (tmp / "prepared.json").write_text(json.dumps(manifest, indent=2) + "\n")
        check_out(out)  # another process may have written it meanwhile
        if out.exists():
            out.rmdir()  # empty: replaced by the finished folder
        os.rename(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return manifest


class Checks:
    """What `write_plan` checks in every file it writes, and what it found (recorded in prepared.json).

    Damaged but decodable JPEGs: libjpeg decodes them but warns on stderr at every read (at every epoch of
    training). Each is re-encoded once, as a PNG of exactly the pixels OpenCV (our loader) decodes from it:
    lossless, so the dataset does not change, and only a handful of files grow. A high-quality JPEG would
    keep the size but lose a little more at each re-encoding.

    Masks without any `foreground` value: still written (an image without the object is a valid example,
    and dropping it would change the dataset's official split), but named, since in a dataset where every
    image shows the object it is usually an annotation error the user may want to drop.
    """

    NAMED = 10  # names in a console warning; prepared.json lists them all

    def __init__(self, foreground: tuple[int, ...]) -> None:
        self.foreground = list(foreground)
        self.reencoded: list[dict[str, str]] = []  # {"source", "written", "libjpeg"}
        self.empty_masks: list[str] = []  # written paths, relative to out

    def jpeg(self, encoded: bytes, dest: str, *, source: str) -> tuple[bytes, str]:
        """(bytes, dest) to write: as given, or a lossless PNG (dest's suffix .png) if libjpeg warns on them."""
        if not encoded.startswith(JPEG_START):
            return encoded, dest
        with libjpeg_messages() as messages:
            cv2.imdecode(np.frombuffer(encoded, np.uint8), cv2.IMREAD_REDUCED_GRAYSCALE_8)  # see libjpeg_messages
        if not messages:
            return encoded, dest
        with libjpeg_messages():  # it warns again while decoding the pixels
            pixels = cv2.imdecode(np.frombuffer(encoded, np.uint8), cv2.IMREAD_UNCHANGED)  # as the loader does
        dest = PurePosixPath(dest).with_suffix(".png").as_posix()
        self.reencoded.append({"source": source, "written": dest, "libjpeg": messages[0]})
        return png_bytes(pixels), dest

    def mask(self, encoded: bytes, dest: str) -> None:
        if PurePosixPath(dest).parent.name != "masks":
            return
        stored = cv2.imdecode(np.frombuffer(encoded, np.uint8), cv2.IMREAD_UNCHANGED)
        if stored is None:
            raise DataError(f"{dest}: the mask written cannot be decoded; the download may be damaged, fetch it again")
        if not np.isin(stored, self.foreground).any():
            self.empty_masks.append(dest)

    def warnings(self) -> list[str]:
        found = []
        if self.reencoded:
            files = [entry["source"] for entry in self.reencoded]
            found.append(
                f"{len(files)} JPEG(s) damaged but decodable (libjpeg: {self.reencoded[0]['libjpeg']}), re-encoded as lossless PNG: {self._named(files)}"
            )
        if self.empty_masks:
            found.append(
                f"{len(self.empty_masks)} mask(s) with no foreground pixel (value {', '.join(map(str, self.foreground))}), written anyway: {self._named(self.empty_masks)}"
            )
        return found

    def _named(self, files: list[str]) -> str:
        more = f" and {len(files) - self.NAMED} more (all in prepared.json)" if len(files) > self.NAMED else ""
        return ", ".join(files[: self.NAMED]) + more


JPEG_START = b"\xff\xd8"  # start-of-image marker: JPEG data, whatever the file is called
LIBJPEG_WARNING = re.compile(
    r"(?:Corrupt JPEG data|Premature end of JPEG file|Invalid SOS parameters|Inconsistent progression|"
    r"Unknown Adobe color transform|Warning: unknown JFIF)[^\n]*\n?"
)


@contextmanager
def libjpeg_messages() -> Iterator[list[str]]:
    """The libjpeg warnings printed while in the block (e.g. "Corrupt JPEG data: 3 extraneous bytes before marker 0xd9").

    Pillow's decoder silences them, and OpenCV has no API for them: libjpeg prints them from C to the
    process's stderr. So file descriptor 2 points at a temporary file meanwhile. Decoding at 1/8 scale
    (IMREAD_REDUCED_*_8) still reads all the entropy-coded data, where such damage lies, at a third of the
    time. Other text written meanwhile (a progress bar's refresh thread) is passed on to stderr.
    """
    messages: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with tempfile.TemporaryFile() as captured:
            os.dup2(captured.fileno(), 2)
            try:
                yield messages
            finally:
                os.dup2(saved, 2)
                captured.seek(0)
                text = captured.read().decode(errors="replace")
    finally:
        os.close(saved)
    messages += [line.strip() for line in LIBJPEG_WARNING.findall(text)]
    if rest := LIBJPEG_WARNING.sub("", text):
        sys.stderr.write(rest)
        sys.stderr.flush()


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


def threshold_to_png(name: str, *, at: int = 128) -> Convert:
    """A JPEG-compressed two-level mask (values spread around 0 and 255, maybe 3 equal channels) as a
    single-channel 0/255 PNG: 255 where the decoded grey is >= `at`, else 0."""
    return lambda data: png_bytes((np.asarray(open_image(data[0], name).convert("L")) >= at).astype(np.uint8) * 255)


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
