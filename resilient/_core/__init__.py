# Sans-I/O cores: decisions and state machines that never sleep, await, lock or touch the network,
# and read time only as arguments. ruff's banned-api setting for this folder enforces it.
