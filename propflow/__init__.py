"""propflow: the entry points (CLI, serve) and the service layer over core, models,
notifications, tasks and flows. Importing it changes nothing: the entry points call
core.prefect_env.configure() themselves."""
