"""The leader side: election, planning, recovery and dispatch, run by the leader tick."""
