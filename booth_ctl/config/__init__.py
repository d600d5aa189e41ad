"""The booth's configuration and its recipes, validated at load.

What flows through here: TOML files in, frozen pydantic models out. Imports ``drivers`` (its
transport and register-map models) and nothing else of ``booth_ctl``.
"""
