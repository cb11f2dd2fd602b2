"""The plaintext inside a backup stream: named sections, then a manifest of their digests.

Layout: sections, each ``b"S"``, a 2-byte name length, the UTF-8 name, then data blocks of a
4-byte length and the bytes, ended by a zero length. After the last section comes ``b"E"`` and
nothing else. The first section is ``backup.json`` (what the backup holds) and the last is
``manifest.json`` (the size and SHA-256 of every other section), so a reader checks both ends.
Sections are written as they are produced, so a database dump is streamed, never held whole.
"""

import hashlib
import json
import re
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from llero.backup.stream import BackupInvalid, Writable

INFO_SECTION = "backup.json"
MANIFEST_SECTION = "manifest.json"
NAME_MAX = 255
BLOCK_MAX = 16 * 1024 * 1024
# The info and the manifest are small JSON documents; a larger one is not one of ours.
DOCUMENT_MAX = 1024 * 1024
# Section names are relative paths of plain parts, so a name can never leave the restore target.
NAME_PATTERN = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*(/[A-Za-z0-9_-][A-Za-z0-9._-]*)*")

_SECTION = b"S"
_END = b"E"
_NAME_LENGTH = struct.Struct(">H")
_BLOCK_LENGTH = struct.Struct(">I")


@dataclass
class _Digest:
    size: int = 0
    sha256: Any = field(default_factory=hashlib.sha256)

    def update(self, data: bytes) -> None:
        self.size += len(data)
        self.sha256.update(data)


class ArchiveWriter:
    """Write sections into ``output`` and record each one's size and digest for the manifest."""

    def __init__(self, output: Writable, info: dict[str, Any]) -> None:
        self._output = output
        self._digests: dict[str, _Digest] = {}
        self.add(INFO_SECTION, [_json_bytes(info)])

    def add(self, name: str, blocks: Iterable[bytes]) -> int:
        """Write one section from ``blocks``; return its size in bytes."""
        _check_name(name)
        if name in self._digests or name == MANIFEST_SECTION:
            raise ValueError(f"section {name} is written twice")
        encoded = name.encode("utf-8")
        self._output.write(_SECTION + _NAME_LENGTH.pack(len(encoded)) + encoded)
        digest = self._digests[name] = _Digest()
        for block in blocks:
            for start in range(0, len(block), BLOCK_MAX):
                piece = block[start : start + BLOCK_MAX]
                self._output.write(_BLOCK_LENGTH.pack(len(piece)) + piece)
                digest.update(piece)
        self._output.write(_BLOCK_LENGTH.pack(0))
        return digest.size

    def finish(self) -> dict[str, Any]:
        """Write the manifest and the end mark; return the manifest."""
        manifest = {
            "sections": {
                name: {"size": digest.size, "sha256": digest.sha256.hexdigest()}
                for name, digest in self._digests.items()
            }
        }
        encoded = MANIFEST_SECTION.encode("utf-8")
        document = _json_bytes(manifest)
        self._output.write(_SECTION + _NAME_LENGTH.pack(len(encoded)) + encoded)
        self._output.write(_BLOCK_LENGTH.pack(len(document)) + document + _BLOCK_LENGTH.pack(0))
        self._output.write(_END)
        return manifest


# A sink receives the section name and returns where its bytes go, or None to skip them.
SectionSink = Callable[[str], Writable | None]


class _ChunkReader:
    """Read exact byte counts across the chunks that ``decrypt_chunks`` yields."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = bytearray()

    def read_exactly(self, count: int) -> bytes:
        while len(self._buffer) < count:
            chunk = next(self._chunks, None)
            if chunk is None:
                raise BackupInvalid("the backup content ends inside a section")
            self._buffer += chunk
        data = bytes(self._buffer[:count])
        del self._buffer[:count]
        return data

    def at_end(self) -> bool:
        while not self._buffer:
            chunk = next(self._chunks, None)
            if chunk is None:
                return True
            self._buffer += chunk
        return False


def read_archive(chunks: Iterator[bytes], sink: SectionSink) -> dict[str, Any]:
    """Read every section into ``sink``, check them against the manifest, and return the info.

    Raises BackupInvalid for a malformed layout, an unsafe or repeated name, or a section whose
    size or digest differs from the manifest.
    """
    reader = _ChunkReader(chunks)
    digests: dict[str, _Digest] = {}
    documents: dict[str, bytes] = {}
    while True:
        mark = reader.read_exactly(1)
        if mark == _END:
            break
        if mark != _SECTION:
            raise BackupInvalid("the backup content is malformed (unknown record mark)")
        name = _read_name(reader)
        if name in digests or name in documents:
            raise BackupInvalid(f"the backup contains section {name} twice")
        if name in {INFO_SECTION, MANIFEST_SECTION}:
            documents[name] = _read_document(reader, name)
            if name == MANIFEST_SECTION:
                digests[name] = _Digest()
            continue
        digests[name] = _read_blocks(reader, sink(name))
    if not reader.at_end():
        raise BackupInvalid("the backup has data after its end mark")
    return _checked_info(documents, digests)


def _read_name(reader: _ChunkReader) -> str:
    (length,) = _NAME_LENGTH.unpack(reader.read_exactly(_NAME_LENGTH.size))
    try:
        name = reader.read_exactly(length).decode("utf-8")
    except UnicodeDecodeError:
        raise BackupInvalid("the backup names a section in invalid UTF-8") from None
    if len(name) > NAME_MAX or not NAME_PATTERN.fullmatch(name):
        raise BackupInvalid(f"the backup names a section {name[:80]!r}, which is not allowed")
    return name


def _read_blocks(reader: _ChunkReader, target: Writable | None) -> _Digest:
    digest = _Digest()
    while True:
        (length,) = _BLOCK_LENGTH.unpack(reader.read_exactly(_BLOCK_LENGTH.size))
        if length == 0:
            return digest
        if length > BLOCK_MAX:
            raise BackupInvalid("the backup content is malformed (a block is too large)")
        block = reader.read_exactly(length)
        digest.update(block)
        if target is not None:
            target.write(block)


def _read_document(reader: _ChunkReader, name: str) -> bytes:
    collected = bytearray()

    class _Collector:
        def write(self, data: bytes) -> int:
            collected.extend(data)
            if len(collected) > DOCUMENT_MAX:
                raise BackupInvalid(f"section {name} is larger than {DOCUMENT_MAX} bytes")
            return len(data)

    _read_blocks(reader, _Collector())
    return bytes(collected)


def _checked_info(documents: dict[str, bytes], digests: dict[str, _Digest]) -> dict[str, Any]:
    if INFO_SECTION not in documents or MANIFEST_SECTION not in documents:
        raise BackupInvalid("the backup lacks its backup.json or manifest.json section")
    info = _load_json(documents[INFO_SECTION], INFO_SECTION)
    manifest = _load_json(documents[MANIFEST_SECTION], MANIFEST_SECTION)
    listed = manifest.get("sections")
    if not isinstance(listed, dict):
        raise BackupInvalid("manifest.json lists no sections")

    actual = {name: digest for name, digest in digests.items() if name != MANIFEST_SECTION}
    actual[INFO_SECTION] = _Digest()
    actual[INFO_SECTION].update(documents[INFO_SECTION])
    if set(listed) != set(actual):
        raise BackupInvalid("the sections of the backup differ from its manifest")
    for name, digest in actual.items():
        expected = listed[name]
        if expected != {"size": digest.size, "sha256": digest.sha256.hexdigest()}:
            raise BackupInvalid(f"section {name} differs from its manifest entry")
    return info


def _load_json(document: bytes, name: str) -> dict[str, Any]:
    try:
        value = json.loads(document)
    except ValueError:
        raise BackupInvalid(f"{name} in the backup is not valid JSON") from None
    if not isinstance(value, dict):
        raise BackupInvalid(f"{name} in the backup is not a JSON object")
    return value


def _json_bytes(value: dict[str, Any]) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode("utf-8")


def _check_name(name: str) -> None:
    if len(name) > NAME_MAX or not NAME_PATTERN.fullmatch(name):
        raise ValueError(f"section name {name!r} is not allowed")


def read_file_blocks(handle: IO[bytes], block_size: int = 1024 * 1024) -> Iterator[bytes]:
    """Yield the rest of ``handle`` in blocks."""
    while block := handle.read(block_size):
        yield block
