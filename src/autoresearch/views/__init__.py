"""Read-only views of a session: the shared summary model and the commands that show it."""
