"""The worker side: node identity, the bootstep, lease keeping and the task runner."""
