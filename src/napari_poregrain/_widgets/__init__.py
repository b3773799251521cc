"""Dock widgets: thin faces over the engine."""
