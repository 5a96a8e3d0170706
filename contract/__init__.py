"""The public JSON shapes: what the API returns, and what webhooks and the event stream carry.

A room of its own because three kinds of process render them (API workers, inference workers writing
webhook payloads, the maintenance worker failing exhausted jobs) and none but the API may import Flask.
Imports nothing of ours.
"""
