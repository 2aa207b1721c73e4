"""The tests read event streams with the client's own SSE reader (one parser for both)."""
from app.client.sse import Message, messages, parse

__all__ = ["Message", "messages", "parse"]
