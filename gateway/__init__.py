"""The junction gateway (installed as `callbox_gateway`)."""
