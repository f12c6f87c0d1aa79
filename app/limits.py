"""Limits shared by the settings and the input checks, in a module that imports nothing (so
`vittle demo --help` does not load numpy or Pillow)."""

MAX_UPLOAD_BYTES = 10 * 1024 * 1024
"""Largest accepted upload, in bytes (the default of `--max-upload-mb`)."""
