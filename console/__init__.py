"""The control-room console at the commissionerate (installed as `callbox_console`)."""
