"""Outbound notifications about incidents (webhooks, Telegram): queued in the database with the incident change,
sent by their own task, retried with back-off."""
