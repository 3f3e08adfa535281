"""Running workflows: the engine for one run, the thread-pool runner, and the run records they produce."""
