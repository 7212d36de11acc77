"""Box firmware (MicroPython). On CPython this folder is the package `callbox_firmware`, so the gateway imports the very same codec file (wire.py). Not copied to the box."""
