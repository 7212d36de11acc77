"""One module per `callbox` subcommand; see callbox_tools.cli."""
