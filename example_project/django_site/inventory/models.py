from django.db import models


class Item(models.Model):
    """A row the partitioned job processes once."""

    name = models.CharField(max_length=100)
    #: times the job processed it: 1 everywhere once the job is done
    processed = models.IntegerField(default=0)
    #: the elk node (worker start) that did it
    processed_by = models.CharField(max_length=200, blank=True, default="")
