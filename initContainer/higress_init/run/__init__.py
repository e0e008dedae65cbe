"""One run: the phases and their runner, the warm fast path (runstate), the report, the recorded deployment."""
