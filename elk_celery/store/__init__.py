"""The Redis side: Lua scripts, connections, the leader lease and node registry."""
