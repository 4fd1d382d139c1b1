"""Storage port: the ``ObjectStore`` protocol every storage adapter implements.

Keys are ``/``-separated object names inside a bucket (no leading ``/``, no ``.``/``..``
segments). Bucket names are logical (``conversation-files``, ``training-files``); an
adapter may map them to real backend buckets.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Mapping, Protocol, Sequence, runtime_checkable


class ObjectNotFound(LookupError):
    """The object ``key`` does not exist in ``bucket``."""

    code = "object_not_found"

    def __init__(self, bucket: str, key: str) -> None:
        super().__init__(f"object {key!r} not found in bucket {bucket!r}")
        self.bucket = bucket
        self.key = key


class StorageError(RuntimeError):
    """A backend failure other than not-found (network, auth, missing bucket...).

    Adapters put the bucket and key in the message and chain the backend error.
    """

    code = "storage_error"


@runtime_checkable
class ReadableStream(Protocol):
    """Binary stream returned by ``ObjectStore.open_stream``."""

    def read(self, n: int = -1, /) -> bytes: ...


@runtime_checkable
class ObjectStore(Protocol):
    """Object storage: buckets of immutable-ish blobs addressed by key."""

    def get(self, bucket: str, key: str) -> bytes:
        """Whole object content; raises ``ObjectNotFound``."""
        ...

    def put(
        self, bucket: str, key: str, data: bytes, content_type: str | None = None
    ) -> None:
        """Create or overwrite an object. ``content_type`` defaults to the one of the key's file
        name (``lorafiles.storage.content_types``); a different one for a known name is an error."""
        ...

    def put_file(
        self,
        bucket: str,
        key: str,
        path: str | os.PathLike[str],
        content_type: str | None = None,
    ) -> None:
        """Create or overwrite an object from a local file, streamed from disk."""
        ...

    def open_stream(self, bucket: str, key: str) -> AbstractContextManager[ReadableStream]:
        """Context manager yielding a stream to ``read(n)`` from; raises ``ObjectNotFound``."""
        ...

    def exists(self, bucket: str, key: str) -> bool:
        """Whether the object exists."""
        ...

    def delete(self, bucket: str, key: str) -> None:
        """Delete an object; a missing object is not an error."""
        ...

    def list(self, bucket: str, prefix: str) -> list[str]:
        """Sorted keys starting with ``prefix`` (plain string prefix, recursive)."""
        ...

    def signed_url(
        self, bucket: str, key: str, expires_in: int, download_name: str | None = None
    ) -> str:
        """Time-limited GET URL; ``download_name`` makes it an attachment with that name."""
        ...


# ---------------------------------------------------------------------------------------------
# Tokenizer port: a target model's real tokenizer and chat template (adapters: lorafiles.tokens)
# ---------------------------------------------------------------------------------------------
class TemplateRenderError(ValueError):
    """The model's chat template refused the messages (its `raise_exception`, or a Jinja error)."""

    code = "template_render_failed"


@dataclass(frozen=True)
class TokenCount:
    """Tokens of one rendered example: all of them, and those the trainer computes loss on."""

    total: int
    trainable: int


@runtime_checkable
class ChatModel(Protocol):
    """One supported target model: its tokenizer plus its chat template.

    Messages are mappings with `role` ("system" | "user" | "assistant") and `content`.
    """

    id: str                       # registry id, e.g. "mistral-7b-instruct-v0.2"
    tokenizer_id: str             # what tokenizes, e.g. "sentencepiece 0.2.3: SentencePiece v1 ... (mode)"
    vocab_sha256: str             # sha256 of the vocabulary file the tokenizer loads
    template_id: str              # e.g. "mistralai/Mistral-7B-Instruct-v0.2 tokenizer_config.json chat_template"
    template_sha256: str          # sha256 of the shipped template text
    control_tokens: frozenset[str]  # strings the trainer's tokenizer turns into control tokens

    def render(self, messages: Sequence[Mapping[str, str]], *, add_generation_prompt: bool = False) -> str:
        """The text the trainer builds with `apply_chat_template(..., tokenize=False)`; raises
        `TemplateRenderError`."""
        ...

    def encode(self, text: str) -> list[int]:
        """Token ids of rendered text, control strings mapped as the trainer's tokenizer maps them."""
        ...

    def count(self, messages: Sequence[Mapping[str, str]], trained: Sequence[bool]) -> TokenCount:
        """Tokens of the rendered example; `trained[i]` marks message i as trained (assistant only)."""
        ...
