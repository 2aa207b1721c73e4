"""Request bodies of /v1/corpora (responses are built by app.corpora.service.corpus_object)."""
from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.admin.endpoints import NAME_PATTERN
from app.core.text import storable

MAX_TOP_K = 1000
MAX_QUERY_CHARS = 10_000


class CreateCorpus(BaseModel):
    model_config = ConfigDict(extra="forbid")
    file: str = Field(min_length=1, max_length=64, description="An uploaded file's id (purpose 'corpus').")
    name: str | None = Field(None, min_length=1, max_length=200, description="Display name; default the file's name.",
                             json_schema_extra={"pattern": NAME_PATTERN})

    @field_validator("name")
    @classmethod
    def _printable(cls, value: str | None) -> str | None:
        if value is not None and not (storable(value) and re.match(NAME_PATTERN, value)):
            raise ValueError("use printable characters only (no control, invisible formatting or bidi-override "
                             "characters)")
        return value


class SearchCorpus(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS, description="Free text; BM25 over its words.")
    top_k: int = Field(10, ge=1, le=MAX_TOP_K, description=f"How many documents to return, 1-{MAX_TOP_K}.")

    @field_validator("query")
    @classmethod
    def _has_words(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the query is blank; send some words to search for")
        if not storable(value):
            raise ValueError("the query holds characters that cannot be searched (NUL or lone surrogates)")
        return value


class ShareCorpus(BaseModel):
    model_config = ConfigDict(extra="forbid")
    shared: bool = Field(True, description="true: every tenant can read and search it; false: only its owner.")
