"""What a run measured, shared by the agent on an instance and the readers at home: leaf modules (stdlib, and
pydantic for the typed models the readers use)."""
