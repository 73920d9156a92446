"""The operator review UI (Flask): OOD queue, labelling, class registry, imports, live counts."""
