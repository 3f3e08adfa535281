"""Other workflow file formats, translated onto :class:`~pytest_promptab.workflow.schema.WorkflowConfig`."""
