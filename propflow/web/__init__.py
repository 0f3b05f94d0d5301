"""The HTTP door: the JSON API (/api), the staff inbox (/), owners' pages (/o), one-tap links
(/l) and the operations dashboard, all served by `propflow serve` on PROPFLOW_WEB_PORT.

Every route calls propflow.actions, as the CLI does: one set of rules, whatever the door.
"""
