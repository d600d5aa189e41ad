"""The one command authority: every command, from any link or the CLI, enters here.

Parse, check mode and role, deduplicate by request id, audit, execute through the controller and
answer with the contract's codes. Imports ``config``, ``records`` and ``control``'s command
interface; never a link.
"""
