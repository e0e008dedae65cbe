"""The command line: the parser and one error-to-exit-code map (main), status, migrate, watch's metrics."""
