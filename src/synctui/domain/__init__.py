"""The pure rules of copy trading: no I/O, no asyncio, only `Decimal` money.

Everything here can be unit-tested in isolation and is shared by the brokers,
the engine and the UI, so a rule is written once.
"""
