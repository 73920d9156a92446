"""Shared infrastructure: settings, local bring-up of Kafka/MinIO/PostgreSQL, clients, DB models."""
