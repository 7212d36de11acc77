"""The technician's laptop: the `callbox` command-line tool (installed as the
package `callbox_tools`)."""
