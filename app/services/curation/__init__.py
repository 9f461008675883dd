"""Curation rules every prompt passes: de-duplication, splits by user ID, PII, per-user cap."""
