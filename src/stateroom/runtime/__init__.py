"""The object runtime: activation, event order, gates, hibernation, alarms."""
