"""`synctui bench`: how fast the copier is, measured the way a user drives it.

Every figure comes from the public path (`Store.open` -> `Session.start` ->
`engine.place_order` -> `session.settle()`), seeded, on a real SQLite file in
a temporary folder, with ratio followers on two brokers of different naming.
Beside it, the floor: the least work a copy needs (its rows written by bare
sqlite3 in one transaction, its quantity computed by a bare loop), measured in
the same run, so the ratio to it says how much the engine itself costs.
"""
