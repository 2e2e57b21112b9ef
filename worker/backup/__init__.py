"""SSH configuration backups of routers and switches (netmiko), versioned in the store, with diffs and metrics."""
