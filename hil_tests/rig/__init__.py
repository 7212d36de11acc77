"""The test bench: virtual boxes, link emulators, the rig controller client (installed as `callbox_rig`)."""
