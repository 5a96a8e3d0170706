"""Outbound webhook delivery as a library: the request-forgery guard, signing, one bounded HTTP attempt,
and the retry policy. No Celery, no SQL: the deliverer (pipeline.deliveries) ties it to the outbox.

The API imports only `webhooks.urlguard` (stdlib only) to check URLs at submission.
"""
