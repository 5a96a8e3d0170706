"""Call-record (CDR) fraud detection: SIM-box callers found in a file of call detail records.

`spec` is the part the API uses to check an upload cheaply (standard library only); `detect` runs the
detection in DuckDB inside a tabular worker. Neither knows about Celery, Flask or PostgreSQL.
"""
