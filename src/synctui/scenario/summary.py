"""A human-readable replay summary, for `synctui replay FILE` without --json."""

from __future__ import annotations

from typing import Any


def summary(result: dict[str, Any]) -> str:
    lines: list[str] = []
    for name, group in result["groups"].items():
        reason = f" ({group['reason']})" if group["reason"] else ""
        lines.append(f"group {name}: {group['status']}{reason}, leader {group['leader']}, "
                     f"followers {', '.join(group['followers']) or '-'}")
    for account, data in result["accounts"].items():
        flag = " BREACHED" if data["breached"] else ""
        lines.append(f"account {account}: balance {data['balance']} equity {data['equity']} "
                     f"available {data['available']}{flag}")
        for pos in data["positions"]:
            lines.append(f"    {pos['side']} {pos['qty']} {pos['symbol']} @ {pos['avg_price']}")
        for order in data["orders"]:
            lines.append(f"    working {order['type']} {order['side']} {order['qty']} "
                         f"{order['symbol']} @ {order['price']}")
    for failure in result["failures"]:
        lines.append(f"failure {failure['group']}/{failure['account']} {failure['symbol']}: "
                     f"{failure['reason']}")
    for error in result["errors"]:
        lines.append(f"refused step {error['step']}: {error['message']}")
    return "\n".join(lines) + "\n"
