"""Driving a world with a store: the outbox loop, start-up reconciliation, restart.

After every command: save (the leader event and its intents, in one
transaction), send the intents, commit what the brokers did, handle what
that caused, and save again (the intents' outcomes with it), until nothing
is pending. Two commits per leader event's fan-out, never one per follower
order.

The brokers' side is committed on its own, first, because a broker is a
separate system: once it accepted an order, the order exists whether or not
the engine lives to record it. A crash between the two commits leaves
intents pending while the brokers hold their orders; the restart resolves
each by its client order id, and that lookup (with the broker's refusal of a
repeated client id behind it) is all that keeps the copy single.
"""

from __future__ import annotations

import gc
from collections.abc import Callable

from synctui.domain.clock import Clock
from synctui.engine.world import World
from synctui.store.store import Store


class Session:
    def __init__(self, world: World, store: Store, clock: Clock) -> None:
        self.world = world
        self.store = store
        self.clock = clock

    @classmethod
    async def start(cls, store: Store, clock: Clock, build: Callable[[], World]) -> Session:
        """A new database gets the world `build` makes; an existing one is loaded and
        reconciled: pending intents are completed (never re-sent when the broker already
        has them) and broker events not yet handled are handled."""
        if store.fresh:
            world = build()
            store.attach(world, new=True)
            await store.save(world, initial=True)
            store.fresh = False
        else:
            world = await store.load(clock)
            store.attach(world)
            store.note("app", "start", "loaded from the database")
        session = cls(world, store, clock)
        await session.settle()
        return session

    async def settle(self) -> None:
        engine = self.world.engine
        while True:
            await self.store.save(self.world)
            if engine.idle:
                return
            if engine.ready_to_send:
                engine.dispatch()
                await self.store.save_venue(self.world)
            engine.settle()

    async def restart(self) -> None:
        """Drop everything in memory and come back from the database alone."""
        await self.settle()
        self.world.engine.close()
        self.store.detach()
        self.world = await self.store.load(self.clock)
        self.store.attach(self.world)
        self.store.note("app", "restart", "rebuilt from the database")
        await self.settle()


def freeze_start_up() -> None:
    """Take what is alive now (modules, classes, the app, the loaded desk) out of the
    garbage collector's sight, after collecting what is garbage already. Called once,
    by the app when its desk is open and by the benchmark after `Session.start`.

    A full collection walks every tracked object. With a dashboard's imports and a
    desk of a thousand followers that took 50-80 ms, inside whichever fan-out crossed
    the collector's threshold: it made the 1,000-follower p99. What start-up built
    lives until exit, so walking it again finds nothing (`gc.freeze` is CPython's
    answer for such objects). Objects of it that die later are still freed by their
    reference counts; only a reference cycle among them would stay until exit."""
    gc.collect()
    gc.freeze()
