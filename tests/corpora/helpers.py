"""Corpora test helpers: a corpus file uploaded and indexed as a worker indexes it (execute_index, in
process), over the real app, database and broker."""
from __future__ import annotations

import random

from tests.api.helpers import auth, upload

WORDS = ("market shares fell sharply while the team scored twice in the final minutes of a match that "
         "ministers debated before parliament voted on the budget and players celebrated").split()


def documents(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 14))) for _ in range(n)]


def text_file(docs: list[str]) -> bytes:
    return ("\n".join(docs) + "\n").encode()


def upload_corpus(client, key: str, content: bytes, filename: str = "corpus.txt"):
    return upload(client, key, content, filename=filename, purpose="corpus")


def create_corpus(client, key: str, content: bytes, name: str = "news", index: bool = True) -> dict:
    """Upload, create, and (index=True) index it now as the worker would; returns the corpus object."""
    from workers.tasks.index_corpus import execute_index

    file = upload_corpus(client, key, content)
    assert file.status_code == 200, file.text
    created = client.post("/v1/corpora", headers=auth(key), json={"file": file.json()["id"], "name": name})
    assert created.status_code == 200, created.text
    if not index:
        return created.json()
    assert execute_index(created.json()["id"]) == "ready"
    return client.get(f"/v1/corpora/{created.json()['id']}", headers=auth(key)).json()
