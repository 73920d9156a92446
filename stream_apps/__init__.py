"""Faust stream apps: scoring (routing and counts), the version builder, projections."""
