"""An example app for elk_celery: process every row of a table, exactly once in practice."""
