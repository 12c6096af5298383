"""The site's partitioned job, found by ``app.autodiscover_tasks()``.

The planner reads the table's highest id, so items added later become new
partitions; the processor marks a range of items in one UPDATE.
"""

from typing import Any

from django.conf import settings
from django.db.models import F, Max

from elk_celery import PartitionContext, partitioned_task

from .models import Item


class ItemPlanner:
    """Plans ``Item`` ids: 100 per partition, up to the current highest id."""

    def partition_size(self) -> int:
        return 100

    def next_max_id(self, start_id: int, range_size: int) -> int:
        top = Item.objects.aggregate(top=Max("id"))["top"] or 0
        return min(int(top), start_id + range_size - 1)  # below start_id: nothing yet


@partitioned_task(namespace=settings.ELK_NAMESPACE, planner=ItemPlanner(), bind=True)
def mark_items(partition: PartitionContext, min_id: int, max_id: int,
               options: dict[str, Any]) -> int:
    partition.check()
    return Item.objects.filter(id__range=(min_id, max_id)).update(
        processed=F("processed") + 1, processed_by=partition.node_id)
