"""Reusable Dash UI builders shared by the pages."""
