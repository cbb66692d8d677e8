"""Constructs: each builds one logical unit; stacks only wire them together."""
