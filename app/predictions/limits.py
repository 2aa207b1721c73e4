"""Bounds of one POST /v1/predictions body, declared in its schema and refused with a 400 naming the field.

A full body (MAX_INPUTS pairs of MAX_INPUT_CHARS ASCII characters each, or as many conversations of
MAX_MESSAGES turns holding MAX_CONVERSATION_CHARS) stays under the 1 MiB JSON body
limit of app/api/limits.py, so a request the schema allows is never a 413.
"""
from __future__ import annotations

MAX_INPUTS = 64  # texts per request: one forward batch's worth (predictions_batch_rows' default)
MAX_INPUT_CHARS = 2048  # characters per text (or text_pair): about 500 tokens, past any job's max_length
MAX_MESSAGES = 64  # turns per conversation (chat-trained decoders)
MAX_CONVERSATION_CHARS = 2 * MAX_INPUT_CHARS  # the contents of one conversation together: what a text pair may hold
MAX_MODEL_CHARS = 256  # the longest fine_tuned_model name a job can have (jobs.fine_tuned_model)
