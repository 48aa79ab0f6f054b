"""The HTML-page guard: an error or login page sent with 200 is not the file."""

from __future__ import annotations

from posixpath import splitext

from .._exceptions import TransferError
from .._models import Entry

# Names no server should answer with a web page: archives and compressed
# files, data and model formats, documents, images, audio and video.
BINARY_SUFFIXES = frozenset(
    # archives and compression
    {".zip", ".tar", ".gz", ".tgz", ".bz2", ".tbz2", ".xz", ".txz", ".zst"}
    | {".7z", ".rar", ".lz4", ".lzma", ".z", ".br", ".whl", ".egg", ".jar"}
    # data and models
    | {".parquet", ".arrow", ".feather", ".orc", ".avro", ".npy", ".npz"}
    | {".pt", ".pth", ".ckpt", ".bin", ".safetensors", ".onnx", ".gguf", ".h5"}
    | {".hdf5", ".nc", ".pkl", ".pickle", ".tfrecord", ".mat", ".sqlite", ".db"}
    | {".warc", ".iso", ".img", ".dmg", ".deb"}
    | {".rpm", ".exe", ".msi", ".so", ".dll"}
    # documents, images, audio, video
    | {".pdf", ".jpg", ".jpeg", ".png", ".gif", ".webp", ".tif", ".tiff"}
    | {".bmp", ".mp3", ".flac", ".wav", ".ogg", ".opus", ".mp4", ".mkv"}
    | {".webm", ".mov", ".avi"}
)
# A page is what these entries ask for.
HTML_SUFFIXES = frozenset({".html", ".htm", ".xhtml", ".shtml"})
HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})


def is_html(content_type: str | None) -> bool:
    """``text/html; charset=utf-8`` -> True: the media type, parameters aside."""
    if not content_type:
        return False
    return content_type.split(";", 1)[0].strip().lower() in HTML_TYPES


def suffix(path: str) -> str:
    """The last suffix of a path's file name, lower-cased (``.gz`` of ``a.tar.gz``)."""
    return splitext(path.rsplit("/", 1)[-1])[1].lower()


def expects_binary(entry: Entry) -> bool:
    """Does this entry promise a file that cannot be a web page?

    A size or a checksum says what the bytes must be; so does a name in
    ``BINARY_SUFFIXES``. A page's own name (``.html``) never does.
    """
    end = suffix(entry.path)
    if end in HTML_SUFFIXES:
        return False
    return (
        entry.size is not None or entry.checksum is not None or end in BINARY_SUFFIXES
    )


def html_page(
    entry: Entry, content_type: str | None, total: int | None, url: str
) -> TransferError | None:
    """The error for an HTML page where ``entry`` expects a file, if it is one.

    A page of exactly the size the entry promises passes (the size is the
    user's word). The error is final for this URL (``retryable=False``): the
    page is the server's considered answer, so asking it again would get the
    same page; the next mirror is tried at once, and none left fails the file.
    """
    if not is_html(content_type) or not expects_binary(entry):
        return None
    if entry.size is not None and total == entry.size:
        return None
    length = f"{total:,} bytes" if total is not None else "of unknown length"
    msg = (
        "the server sent an HTML page (an error or login page?) instead of "
        f"the file: {length} of {content_type} from {url}"
    )
    return TransferError(msg, url=url, retryable=False)
