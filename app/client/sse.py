"""A small Server-Sent Events reader (the WHATWG parsing rules this service needs): the client follows
a job's event stream with it, and the stream tests read what the server sends with it."""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field


@dataclass
class Message:
    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None
    comments: list[str] = field(default_factory=list)


def messages(lines: Iterable[str]) -> Iterator[Message]:
    """Each blank-line-terminated block as a Message (comment-only and retry-only blocks included)."""
    current, seen = Message(), False
    data: list[str] = []
    for line in lines:
        if line == "":
            if seen:
                current.data = "\n".join(data)
                yield current
            current, seen, data = Message(), False, []
            continue
        seen = True
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "":
            current.comments.append(value)
        elif name == "data":
            data.append(value)
        elif name == "event":
            current.event = value
        elif name == "id":
            current.id = value
        elif name == "retry":
            current.retry = int(value)


def parse(text: str) -> list[Message]:
    return list(messages(text.replace("\r\n", "\n").split("\n")))
