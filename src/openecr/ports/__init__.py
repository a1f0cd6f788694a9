"""Interfaces the core needs from storage. Small, role-based ``Protocol``s."""
