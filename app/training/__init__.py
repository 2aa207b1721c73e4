"""Pure ML code: strategies, data readers, artifact writers.

Nothing here imports the service (`app.core`, `app.<domain>`, `workers`); torch is imported lazily
inside strategy modules so `import app.training.registry` stays cheap for the API process.
"""
