"""The mounted volumes: their layout (imports nothing), safe file access, the journal, ownership, the writer."""
