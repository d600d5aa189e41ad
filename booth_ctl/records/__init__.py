"""The record store (SQLite, WAL): lots, units, dips, alarms, recipes, the events outbox and the
command audit. Imports nothing of ``booth_ctl`` but its own modules.
"""
