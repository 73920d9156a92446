"""Event contracts shared by every unit: topic names and keys, JSON Schemas and the codec."""
