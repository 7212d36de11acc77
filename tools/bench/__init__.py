"""One module per benchmark of `callbox bench`; see callbox_tools.commands.bench."""
