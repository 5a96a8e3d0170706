"""Redis, the broker: publishing task messages, job-finished pub/sub, queue depth.

Light on purpose: the API imports it to publish, so nothing here pulls in HTTP clients or models.
"""
