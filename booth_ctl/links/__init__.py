"""Links to the outside: transports that turn their wire format into commands and back.

Each link imports ``commands`` (the authority), ``records`` (its delivery cursor on the events
outbox) and ``config``; never ``control`` internals, never another link.
"""
