"""The data file: the last good snapshot on disk, so a restart serves at once instead of after a crawl.

Beside the snapshot it keeps the crawler's image config dates (config digest -> creation time), so that
the restarted crawler requests no config it has read before; tags' ``first_seen`` survive in the snapshot.

Written atomically (temporary file, fsync, rename, fsync of the folder), so a crash or SIGTERM at
any moment leaves either the old file or the new one. A file that cannot be read back (truncated,
corrupt, from a newer version, or with a number no response could carry) is moved aside, never
deleted, and ignored.

The file lists every repository of the registry, so only the service's user may read it: it is
created with mode 0600 (whatever the umask), and the folders the service creates for it with 0700.
The temporary file gets a random name and is created exclusively (``tempfile.mkstemp``: ``O_EXCL``,
``O_NOFOLLOW``), so a file or symbolic link planted under a name someone predicted is never
written through.
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import os
import tempfile
import time
from array import array
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .model import LayerTable, RepositoryUsage, Snapshot, TagUsage
from .sizes import group_usage

log = logging.getLogger(__name__)

FORMAT = "gitlab-registry-usage-rest snapshot"
VERSION = 3
# Timestamps a response can carry: datetime (Last-Modified, the pages' dates) ends with the year 9999.
LATEST_TIMESTAMP = 253402300799.0
# Config digest -> creation time kept with the snapshot; the builtin crawler keeps no more than this either.
MAX_CONFIGS = 100_000

ConfigDates = dict[str, float | None]


class SnapshotFileError(ValueError):
    """The file exists but does not hold a snapshot this version can read."""


@dataclass(frozen=True, slots=True)
class Saved:
    """What the data file holds: the snapshot and the config dates the crawler had (``{}`` if none)."""

    snapshot: Snapshot
    configs: Mapping[str, float | None]


def encode(snapshot: Snapshot, configs: Mapping[str, float | None] | None = None) -> bytes:
    """Version 3: the served figures, tags as compact arrays (loading must stay fast at 100,000 tags).

    Version 2 added each tag's ``created`` and ``first_seen``, the snapshot's ``warnings`` and ``configs``
    (config digest -> creation time, so that a restarted crawler need not read every config again); version 3
    each tag's layer ids and ``layer_sizes`` (by id), which groups and the cleanup simulator need. A snapshot
    without layers (read from an older file) is written with ``layer_sizes`` null.
    """
    return "".join(encode_parts(snapshot, configs)).encode()


# Items per piece of the arrays and objects written piecewise: about a few hundred KiB of text each.
_PIECE = 10_000


def encode_parts(snapshot: Snapshot, configs: Mapping[str, float | None] | None = None) -> Iterator[str]:
    """``encode``'s text in pieces (a repository, or some thousand numbers, each), to be written one after the
    other: one ``json.dumps`` of the whole snapshot held its document and its text, twice the file, at once."""
    layers = snapshot.layers
    dumps = functools.partial(json.dumps, separators=(",", ":"))
    numbers = itertools.count()

    def tag_layers(tag: TagUsage) -> list[int] | None:
        return None if layers is None else layers.tag_layers(next(numbers)).tolist()

    yield (f'{{"format":{dumps(FORMAT)},"version":{VERSION},"timestamp":{dumps(snapshot.timestamp)},'
           f'"errors":{dumps(list(snapshot.errors))},"warnings":{dumps(list(snapshot.warnings))},"repositories":[')
    for number, repo in enumerate(snapshot.repositories):
        yield ("," if number else "") + dumps(
            [repo.name, repo.size, repo.disk_size, repo.unique_size,
             None if repo.tags is None else [
                 [tag.name, tag.size, tag.disk_size, tag.unique_size, tag.digest, tag.media_type,
                  list(tag.platforms), tag.created, tag.first_seen, tag_layers(tag)]
                 for tag in repo.tags]])
    if layers is None:
        yield '],"layer_sizes":null'
    else:
        yield '],"layer_sizes":['
        sizes = layers.sizes
        for first in range(0, len(sizes), _PIECE):
            yield ("," if first else "") + ",".join(map(str, sizes[first:first + _PIECE]))
        yield "]"
    yield ',"configs":{'
    dates = list(itertools.islice((configs or {}).items(), MAX_CONFIGS))
    for first in range(0, len(dates), _PIECE):
        yield ("," if first else "") + ",".join(f"{dumps(digest)}:{dumps(created)}"
                                                for digest, created in dates[first:first + _PIECE])
    yield "}}"


def decode(data: bytes) -> Snapshot:
    """The snapshot in ``data``; ``SnapshotFileError`` for anything but a complete file of versions 1 to 3."""
    return decode_saved(data).snapshot


def decode_saved(data: bytes) -> Saved:
    """The snapshot and config dates in ``data`` (a version 1 file has no dates, created or first_seen; files
    before version 3 have no layers: their groups have no ``unique_size`` until the next refresh)."""
    try:
        # NaN and Infinity are no JSON (RFC 8259), though Python's json reads them by default.
        document = json.loads(data, parse_constant=_refuse_constant)
    # ValueError includes UnicodeDecodeError; RecursionError is what deeply nested brackets give.
    except (ValueError, RecursionError) as error:
        raise SnapshotFileError(f"not JSON ({error})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise SnapshotFileError("not a snapshot file")
    version = document.get("version")
    if version not in (1, 2, 3) or isinstance(version, bool):
        raise SnapshotFileError(f"format version {version!r}, this version reads 1 to {VERSION}")
    try:
        layer_sizes = _layer_sizes(document["layer_sizes"]) if version >= 3 else None
        reader = _TagReader(version, layer_sizes)
        repositories = tuple(_repository(entry, reader.tag) for entry in _array(document["repositories"]))
        layers = reader.table()
        snapshot = Snapshot(
            timestamp=_number(document["timestamp"]),
            repositories=repositories,
            errors=tuple(_text(error) for error in _array(document["errors"])),
            warnings=tuple(_text(warning) for warning in _array(document["warnings"])) if version >= 2 else (),
            layers=layers,
            groups=group_usage(repositories, layers),
        )
        configs = _configs(document["configs"]) if version >= 2 else {}
    except (KeyError, TypeError, ValueError, OverflowError) as error:
        raise SnapshotFileError(f"malformed content ({type(error).__name__}: {error})") from None
    return Saved(snapshot, configs)


def _repository(entry: Any, tag: Callable[[Any], TagUsage]) -> RepositoryUsage:
    name, size, disk_size, unique_size, tags = _array(entry)
    return RepositoryUsage(
        name=_text(name),
        size=_size(size, nullable=True),
        disk_size=_size(disk_size, nullable=True),
        unique_size=_size(unique_size, nullable=True),
        tags=None if tags is None else tuple(tag(each) for each in _array(tags)),
    )


def _layer_sizes(value: Any) -> array[int] | None:
    if value is None:
        return None
    return array("q", (_size(size) for size in _array(value)))  # OverflowError past 2**63


class _TagReader:
    """Reads the tags of one file's version, collecting their layer ids (version 3) into a ``LayerTable``."""

    def __init__(self, version: int, layer_sizes: array[int] | None) -> None:
        self._version = version
        self._sizes = layer_sizes
        self._starts = array("q", [0])
        self._ids = array("I")
        # One string for every tag of the same name, media type or platform ("latest" in every repository).
        self._shared: dict[str, str] = {}

    def tag(self, entry: Any) -> TagUsage:
        fields = _array(entry)
        if self._version == 1:
            return _tag([*fields, None, None], self._shared)
        if self._version == 2:
            return _tag(fields, self._shared)
        *fields, ids = fields
        if self._sizes is not None:
            count = len(self._sizes)
            for layer in _array(ids):
                if not isinstance(layer, int) or isinstance(layer, bool) or not 0 <= layer < count:
                    raise ValueError(f"layer id {layer!r:.40} is not one of the {count} layers")
                self._ids.append(layer)
            self._starts.append(len(self._ids))
        return _tag(fields, self._shared)

    def table(self) -> LayerTable | None:
        return None if self._sizes is None else LayerTable(self._sizes, self._starts, self._ids)


def _tag(entry: Any, shared: dict[str, str]) -> TagUsage:
    name, size, disk_size, unique_size, digest, media_type, platforms, created, first_seen = _array(entry)
    return TagUsage(
        name=shared.setdefault(_text(name), name),
        size=_size(size),
        disk_size=_size(disk_size),
        unique_size=_size(unique_size),
        digest=None if digest is None else _text(digest),
        media_type=None if media_type is None else shared.setdefault(_text(media_type), media_type),
        platforms=tuple(shared.setdefault(_text(platform), platform) for platform in _array(platforms)),
        created=None if created is None else _number(created),
        first_seen=None if first_seen is None else _number(first_seen),
    )


def _configs(value: Any) -> ConfigDates:
    if not isinstance(value, dict) or len(value) > MAX_CONFIGS:
        raise TypeError(f"expected at most {MAX_CONFIGS} config dates, found {value!r:.40}")
    # The keys are strings (JSON's object keys are); the crawler checks that they are digests.
    return {digest: None if created is None else _number(created) for digest, created in value.items()}


def _array(value: Any) -> list[Any]:
    # Iterating a string or an object would also "work", giving its characters or keys as items.
    if not isinstance(value, list):
        raise TypeError(f"expected an array, found {value!r:.40}")
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, found {value!r:.40}")
    return value


def _size(value: Any, nullable: bool = False) -> Any:
    if value is None and nullable:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise TypeError(f"expected a size in bytes, found {value!r:.40}")
    return value


def _number(value: Any) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"expected a timestamp, found {value!r:.40}")
    # NaN fails every comparison; 1e400 reads as infinity; a huge integer would not convert (OverflowError).
    if not 0 <= value <= LATEST_TIMESTAMP:
        raise ValueError(f"timestamp {value!r:.40} is not a time between 1970 and 9999")
    return float(value)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


class DataFile:
    """Where the snapshot is kept between runs."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def save(self, snapshot: Snapshot, configs: Mapping[str, float | None] | None = None) -> bool:
        """Replace the file with ``snapshot`` (and the crawler's config dates); a failure is logged and leaves
        the old file in place."""
        temporary: Path | None = None
        try:
            _make_private_folders(self.path.parent)
            # In the data file's folder, so that the rename below cannot cross file systems.
            descriptor, name = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
            temporary = Path(name)
            with open(descriptor, "wb") as file:
                # Piece by piece, so the file's text never exists whole in memory (34 MiB at 100,000 tags).
                file.writelines(part.encode() for part in encode_parts(snapshot, configs))
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, self.path)
            directory = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        except OSError as error:
            log.error("could not write the data file %s: %s", self.path, error)
            try:
                if temporary is not None:
                    temporary.unlink(missing_ok=True)
            except OSError as cleanup_error:
                # E.g. the folder is a file (ENOTDIR): the caller must still get False, not an exception.
                log.debug("no temporary file %s to remove: %s", temporary, cleanup_error)
            return False
        log.debug("data file %s written", self.path)
        return True

    def load(self) -> Snapshot | None:
        """The saved snapshot, or None: missing is normal, unreadable content is moved aside."""
        saved = self.load_saved()
        return None if saved is None else saved.snapshot

    def load_saved(self) -> Saved | None:
        """The saved snapshot with its config dates, or None (see ``load``)."""
        started = time.monotonic()
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            log.info("no data file at %s yet; serving data after the first refresh", self.path)
            return None
        except OSError as error:
            log.error("could not read the data file %s: %s", self.path, error)
            return None
        try:
            saved = decode_saved(data)
        except SnapshotFileError as error:
            aside = self._aside_path()
            try:
                os.replace(self.path, aside)
                where = f"moved to {aside}"
            except OSError as move_error:
                where = f"and could not be moved aside: {move_error}"
            log.warning("ignoring the data file %s, %s: %s", self.path, where, error)
            return None
        snapshot = saved.snapshot
        log.info(
            "loaded %d repositories from %s (data of %s, %d config dates) in %.2fs",
            len(snapshot.repositories), self.path,
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(snapshot.timestamp)), len(saved.configs),
            time.monotonic() - started,
        )
        return saved

    def _aside_path(self) -> Path:
        """A name no earlier unreadable file took: os.replace onto one from the same second would delete it."""
        stem = f"{self.path.name}.unreadable-{time.strftime('%Y%m%dT%H%M%S')}"
        aside, number = self.path.with_name(stem), 1
        while aside.exists():
            aside, number = self.path.with_name(f"{stem}.{number}"), number + 1
        return aside


def _make_private_folders(folder: Path) -> None:
    """Create ``folder`` and its missing parents with mode 0700; folders that exist are left as they are."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    for each in reversed(missing):
        try:
            each.mkdir(mode=0o700)
        except FileExistsError:
            continue  # created meanwhile (another process): not ours to change
        os.chmod(each, 0o700)  # mkdir's mode passes through the umask, which may take more than group and others
