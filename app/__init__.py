"""tuneforge: a multi-tenant fine-tuning-as-a-service backend."""
