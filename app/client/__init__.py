"""A small typed client for tuneforge's API, and the `tuneforge` commands built on it.

    from app.client import TuneforgeClient
    with TuneforgeClient("http://127.0.0.1:8000", "tf-...") as client:
        job = client.get_job("ftjob-...")
"""
from app.client.errors import ClientError

__all__ = ["ClientError", "TuneforgeClient"]


def __getattr__(name: str):
    if name == "TuneforgeClient":  # httpx loads only when the client is used
        from app.client.client import TuneforgeClient

        return TuneforgeClient
    raise AttributeError(name)
