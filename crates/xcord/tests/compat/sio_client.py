"""A Socket.IO client (python-socketio) driven over standard input, for the compatibility
tests: the same protocol as sio_client.js. Each input line is JSON, {"emit": EVENT, "data":
DATA} or {"close": true}; each event seen is written as one JSON line {"event", "data"}.

    python3 sio_client.py URL auth|header|none TOKEN polling|websocket

URL may end in a namespace (http://127.0.0.1:PORT/compat/rtms). Exits within 120 s.
"""

import asyncio
import json
import sys
from urllib.parse import urlsplit

import socketio


def out(event, data=None):
    sys.stdout.write(json.dumps({"event": event, "data": data}) + "\n")
    sys.stdout.flush()


async def main():
    url, mode, token, transport = sys.argv[1:5]
    parts = urlsplit(url)
    base = f"{parts.scheme}://{parts.netloc}"
    namespace = parts.path.rstrip("/") or "/"
    client = socketio.AsyncClient(reconnection=False)

    @client.on("*", namespace=namespace)
    async def any_event(event, data=None):
        out(event, data)

    @client.on("connect", namespace=namespace)
    async def connected():
        out("connect", {"transport": client.transport()})

    @client.on("disconnect", namespace=namespace)
    async def disconnected(reason=None):
        out("disconnect", {"reason": str(reason)})

    # A refused namespace is reported at once; the timeout only bounds a lost answer.
    kwargs = {"namespaces": [namespace], "transports": [transport], "wait_timeout": 5}
    if mode == "auth":
        kwargs["auth"] = {"token": token}
    elif mode == "header":
        kwargs["headers"] = {"Authorization": f"Bearer {token}"}
    try:
        await client.connect(base, **kwargs)
    except socketio.exceptions.ConnectionError as e:
        out("connect_error", {"message": str(e)})
        return

    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        command = json.loads(line)
        if "emit" in command:
            await client.emit(command["emit"], command.get("data"), namespace=namespace)
        if command.get("close"):
            break
    await client.disconnect()


asyncio.run(asyncio.wait_for(main(), 120))
