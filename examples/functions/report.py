"""Runs in the sandbox: calls the host function lookup_order, which the
host grants (examples/functions/run.sh), and handles its errors."""
from capsule.functions import ToolError, describe, lookup_order

print(describe())
total = 0
for order_id in (1, 2, 99):
    try:
        order = lookup_order(order_id=order_id)
    except ToolError as error:
        print(f"order {order_id}: {error}")
        continue
    print(f"order {order['id']}: {order['customer']}, {order['status']}, {order['total']:.2f}")
    total += order["total"]
print(f"total {total:.2f}")
