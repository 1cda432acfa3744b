"""Helper module of the greeter package plugin."""

GREETING = "Hello"


def greeting(who: str) -> str:
    return f"{GREETING}, {who}!"
