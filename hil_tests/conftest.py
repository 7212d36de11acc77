"""The HIL suite's plugin (callbox_rig.plugin): --rig, the rig fixtures, the
hardware marker and the scenario summary table."""

from callbox_rig.plugin import *  # noqa: F401,F403  (hooks and fixtures)
