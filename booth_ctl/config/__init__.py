"""The booth's configuration and its recipes, validated at load.

What flows through here: TOML files in, frozen pydantic models out. ``_booth`` holds the models
and the one check (``check_config``) that both ``boothctl config check`` and ``boothctl run``
use; ``_rules`` its cross-field rules; ``_recipe`` the recipes; ``_alloys`` the alloy and flux
tables. Imports ``drivers`` (its transport and register-map models, the reading of the booth file
and the safety-point table shared with the simulator) and nothing else of ``booth_ctl``.
"""
