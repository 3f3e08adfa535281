"""MLflow logging: the client calls, what goes into each run, the logging child process, git info."""
