"""The `prefkit` command: one Typer app mounting each room's sub-commands."""
